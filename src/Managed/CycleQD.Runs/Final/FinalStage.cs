using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using CycleQD.Core.Archives;
using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Core.Evaluation;
using CycleQD.Runs.Families;
using CycleQD.Tensors;

namespace CycleQD.Runs.Final;

/// <summary>
/// The end of a run on real models: the final merge of the archives' best elites, and with
/// final_merge.candidates best+generalists the best generalists (<see cref="FinalCandidates"/>) (weights chosen on
/// the search split, written to final/model.safetensors and final/final.json) and the report
/// (report.json): base, every expert, task arithmetic with λ chosen on the search split, TIES,
/// CycleQD's best elite per task and its final model, each scored on the test split.
/// </summary>
/// <remarks>
/// Resumable: report.json is rewritten after every row with "complete": false, and its rows that do
/// not depend on the search (base, experts, task arithmetic, TIES) are reused by a later final stage
/// of the same run directory under the same evaluation settings; a final.json of the same
/// generation count, elites and final_merge settings is reused instead of searching again. Borrows everything it is given.
/// </remarks>
internal sealed class FinalStage
{
    private readonly ExperimentConfig _config;
    private readonly RunDirectory _dir;
    private readonly IComputeBackend _backend;
    private readonly IWeightSet _base;
    private readonly IReadOnlyDictionary<string, IWeightSet> _experts;
    private readonly IRunEvaluator _evaluator;
    private readonly CycleQDEngine _engine;
    private readonly Dictionary<string, double[]> _searchMemo = new(StringComparer.Ordinal);
    private readonly Dictionary<string, double[]> _testMemo = new(StringComparer.Ordinal);
    private readonly Dictionary<string, double[]?> _retentionMemo = new(StringComparer.Ordinal);
    private Action<string> _progress = _ => { };

    /// <summary>Evaluations made by this stage (search and test splits).</summary>
    public int Evaluations { get; private set; }

    public FinalStage(ExperimentConfig config, RunDirectory dir, IComputeBackend backend, IWeightSet baseModel,
        IReadOnlyDictionary<string, IWeightSet> experts, IRunEvaluator evaluator, CycleQDEngine engine)
    {
        _config = config;
        _dir = dir;
        _backend = backend;
        _base = baseModel;
        _experts = experts;
        _evaluator = evaluator;
        _engine = engine;
    }

    private IReadOnlyList<string> Tasks => _config.Options.Tasks;

    /// <summary>report.retention's tasks, in column order.</summary>
    private IReadOnlyList<string> RetentionTasks => _config.Report.Retention;

    /// <summary>The final table's retention columns of <paramref name="config"/> (report.retention), from its model family.</summary>
    public static IReadOnlyList<RetentionColumn> RetentionColumns(ExperimentConfig config) => ModelFamilies.Of(config).RetentionColumns(config);

    /// <summary>The search split's name in messages ("valid", "train", or "search" when tasks differ).</summary>
    private string SearchSplitName => ModelFamilies.SearchSplitName(_config);

    /// <summary>Names the evaluation the cached scores belong to.</summary>
    public static string EvaluationKey(ExperimentConfig config)
    {
        var e = config.Evaluation;
        string key = $"search={e.Split ?? "default"};report=test;limit={(e.Limit?.ToString(CultureInfo.InvariantCulture) ?? "all")};data={e.TinySkillsDir}";
        // Keys of runs on TinySkills alone keep their old form, so their cached rows stay valid.
        if (e.DataDir != null || e.SplitSeed != RunSplits.DefaultSeed || e.Responder != null)
            key += $";benchmarks={e.DataDir};split_seed={e.SplitSeed.ToString(CultureInfo.InvariantCulture)};responder={e.Responder ?? "model"}";
        // Only runs with retention tasks carry them: the keys (and cached rows) of other runs stay as they were.
        if (config.Report.Retention.Count > 0)
            key += $";retention={string.Join(",", config.Report.Retention)}{ModelFamilies.Of(config).RetentionKey(config)}";
        return key;
    }

    /// <summary>The finished report of this run at <paramref name="generations"/>, or null when the final stage still has to run.</summary>
    public static RunReport? Finished(ExperimentConfig config, RunDirectory dir, int generations)
    {
        var report = RunReport.TryRead(dir.ReportPath, config.Options.Tasks, EvaluationKey(config));
        if (report is not { Complete: true } || report.Generations != generations) return null;
        if (config.FinalMerge.Enabled && (FinalRecord.TryRead(dir.FinalJsonPath) is not { } final || final.Generations != generations
                                          || !SameSearchSettings(final, config.FinalMerge) || !File.Exists(dir.FinalModelPath)
                                          || final.Method != config.FinalMerge.Method || final.Softmax is null)) return null;
        if (config.Report.BaselineModels.Any(b => report.Find(RunReport.BaselineKey(b.Key)) is null)) return null;
        return report;
    }

    /// <summary>
    /// Whether final.json was searched under <paramref name="fm"/>'s candidates, top, grid and rounds, so that
    /// editing final_merge in the run's experiment.yaml and resuming redoes only the final merge.
    /// A final.json written before candidates were recorded counts as "best".
    /// </summary>
    private static bool SameSearchSettings(FinalRecord final, FinalMergeSettings fm) =>
        final.Search is { } s
        && (s.Candidates ?? FinalMergeSettings.BestCandidates) == fm.Candidates && (s.Generalists ?? 0) == fm.Generalists
        && s.TopPerArchive == fm.Top && s.Rounds == fm.Rounds && (s.Grid ?? []).SequenceEqual(fm.Grid);

    /// <summary>Runs the final stage; <paramref name="progress"/> receives one line per step.</summary>
    public async Task<RunReport> RunAsync(Action<string> progress, CancellationToken cancellationToken)
    {
        _progress = progress;
        int generations = _engine.NextGeneration;
        string key = EvaluationKey(_config);
        var cached = RunReport.TryRead(_dir.ReportPath, Tasks, key);
        var report = new RunReport(Tasks, key, generations) { SearchSplit = SearchSplitName, Retention = RetentionColumns(_config) };
        ReportRow? Cached(string k) => cached?.Find(k) is { SearchIndependent: true } r && (RetentionTasks.Count == 0 || r.Retention?.Count == RetentionTasks.Count) ? r : null;
        var state = _engine.CaptureState();

        // Base and experts.
        report.Set(Cached("base") ?? await ScoreRow("base", "base", _base, searchScores: null, "", null, cancellationToken).ConfigureAwait(false));
        Save(report);
        foreach (var e in state.Experts)
        {
            string k = CycleQDEngine.ExpertId(e.Name);
            var row = Cached(k) ?? await ScoreRow(k, "expert " + Short(e.Name), _experts[e.Name], e.Scores, "", null, cancellationToken).ConfigureAwait(false);
            report.Set(row);
            // An expert that is still an archive's best elite is not scored on test twice.
            _testMemo[k] = row.Test!.ToArray();
            _retentionMemo[k] = row.Retention?.ToArray();
            Save(report);
        }

        // Task arithmetic over the experts, λ chosen on the search split.
        report.Set(Cached("task_arithmetic") ?? await TaskArithmeticRow(state, cancellationToken).ConfigureAwait(false));
        Save(report);
        report.Set(Cached("ties") ?? await TiesRow(cancellationToken).ConfigureAwait(false));
        Save(report);
        foreach (var (name, path) in _config.Report.BaselineModels)
        {
            string k = RunReport.BaselineKey(name);
            report.Set(Cached(k) ?? await BaselineRow(k, name, path, cancellationToken).ConfigureAwait(false));
            Save(report);
        }

        // CycleQD: the best elite of each archive, and the per-task combination of them.
        var archives = FinalCandidates.PerTask(_engine.Archives, Tasks.Count);
        var bestRows = new List<ReportRow>();
        foreach (var v in archives)
        {
            var (cell, elite) = FinalCandidates.RankedByQuality((v.Task, v.Archive.Cells)).First();
            var details = EliteDetails(v, cell, elite);
            var (test, retention) = await TestScores(elite.Id, cancellationToken).ConfigureAwait(false);
            string label = v.Archive.IsMean ? $"CycleQD best {Short(Tasks[v.Task])} elite, mean archive" : $"CycleQD best elite, {Short(Tasks[v.Task])} archive";
            var row = new ReportRow("elite:" + Tasks[v.Task], label, elite.Scores.ToArray(), test,
                $"{Describe(elite.Id)}, cell ({string.Join(",", v.Archive.Unflatten(cell))})", details) { Retention = retention };
            report.Set(row);
            bestRows.Add(row);
            Save(report);
        }
        report.Set(new ReportRow("best_elite_per_task", "CycleQD best elite per task",
            Enumerable.Range(0, Tasks.Count).Select(t => bestRows[t].Search![t]).ToArray(),
            Enumerable.Range(0, Tasks.Count).Select(t => bestRows[t].Test![t]).ToArray(),
            "each skill scored by its own archive's best elite (several models)"));
        Save(report);

        if (_config.FinalMerge.Enabled)
        {
            var (softmax, search) = await FinalRows(generations, archives, cancellationToken).ConfigureAwait(false);
            report.Set(softmax);
            report.Set(search);
        }
        report.Complete = true;
        Save(report);
        return report;
    }

    private void Save(RunReport report) =>
        SafetensorsWriter.WriteAtomically(_dir.ReportPath, fs => fs.Write(report.ToJson()));

    private static string Short(string task) => task.Contains('/') ? task[(task.LastIndexOf('/') + 1)..] : task;

    private static string Describe(string id) => EliteIds.TryGetExpertTask(id, out string task) ? "expert " + Short(task) : "elite " + id[..12];

    private JsonObject EliteDetails(TaskArchive v, int cell, Elite e) => new()
    {
        ["task"] = Tasks[v.Task],
        ["archive"] = CycleQDOptions.QualityName(v.Archive.Task, Tasks),
        ["cell"] = new JsonArray(v.Archive.Unflatten(cell).Select(c => (JsonNode)c).ToArray()),
        ["bc_tasks"] = new JsonArray(v.Archive.BcTasks.Select(t => (JsonNode)Tasks[t]).ToArray()),
        ["id"] = e.Id,
        ["generation"] = e.Generation,
    };

    private async Task<ReportRow> ScoreRow(string key, string label, IWeightSet w, IReadOnlyList<double>? searchScores, string note, JsonObject? details, CancellationToken ct)
    {
        _progress($"final: scoring {label}");
        var search = searchScores?.ToArray() ?? await Score(w, EvaluationPurpose.Search, ct).ConfigureAwait(false);
        var test = await Score(w, EvaluationPurpose.Report, ct).ConfigureAwait(false);
        return new ReportRow(key, label, search, test, note, details) { Retention = await RetentionScores(w, ct).ConfigureAwait(false) };
    }

    /// <summary>Scores of <paramref name="w"/> on report.retention's tasks (test split); null when there are none.</summary>
    private async Task<double[]?> RetentionScores(IWeightSet w, CancellationToken ct)
    {
        if (RetentionTasks.Count == 0) return null;
        if (_evaluator is not IRetentionEvaluator retention)
            throw new Core.ConfigurationException($"report.retention: this model family's evaluator cannot score retention tasks ({string.Join(", ", RetentionTasks)})");
        var scores = await retention.EvaluateRetentionAsync(_backend, w, ct).ConfigureAwait(false);
        if (scores.Length != RetentionTasks.Count)
            throw new InvalidOperationException($"the evaluator returned {scores.Length} retention scores for {RetentionTasks.Count} tasks");
        return scores;
    }

    private IReadOnlyDictionary<string, double>? RetentionByTask(double[]? scores) => scores is null ? null : FinalRecord.ByTask(RetentionTasks, scores);

    private async Task<double[]> Score(IWeightSet w, EvaluationPurpose purpose, CancellationToken ct)
    {
        Evaluations++;
        return await _evaluator.EvaluateAsync(_backend, w, purpose, ct).ConfigureAwait(false);
    }

    /// <summary>Test and retention scores of a stored elite or expert, evaluated once per stage.</summary>
    private async Task<(double[] Test, double[]? Retention)> TestScores(string id, CancellationToken ct)
    {
        if (_testMemo.TryGetValue(id, out var s)) return (s, _retentionMemo.GetValueOrDefault(id));
        _progress($"final: archive best {Describe(id)}: scoring on test");
        var opened = new List<IWeightSet>();
        double[]? retention;
        try
        {
            var w = Resolve(id, opened);
            s = await Score(w, EvaluationPurpose.Report, ct).ConfigureAwait(false);
            retention = await RetentionScores(w, ct).ConfigureAwait(false);
        }
        finally
        {
            foreach (var o in opened) o.Dispose();
        }
        _testMemo[id] = s;
        _retentionMemo[id] = retention;
        return (s, retention);
    }

    private IWeightSet Resolve(string id, List<IWeightSet> opened)
    {
        if (EliteIds.TryGetExpertTask(id, out string task))
            return _experts.TryGetValue(task, out var e) ? e
                : throw new RunDirectoryException($"elite '{id}': no such expert in the experiment");
        var w = _dir.Elites.Open(_backend, id);
        opened.Add(w);
        return w;
    }

    /// <summary>base + Σᵢ wᵢ (θᵢ − base) on the backend: the base joins as a parent with weight 1 − Σ wᵢ, so the merge's normalisation divides by 1.</summary>
    private IWeightSet LinearMerge(IReadOnlyList<IWeightSet> models, IReadOnlyList<double> weights)
    {
        var parents = models.Append(_base).ToArray();
        var w = new float[parents.Length];
        double sum = 0;
        for (int i = 0; i < weights.Count; i++) { w[i] = (float)weights[i]; sum += weights[i]; }
        w[^1] = (float)(1 - sum);
        return _backend.Merge(_base, parents, w);
    }

    private static string MergeKey(IReadOnlyList<string> ids, IReadOnlyList<double> weights) =>
        string.Join(";", ids.Zip(weights).Where(p => p.Second != 0).OrderBy(p => p.First, StringComparer.Ordinal)
            .Select(p => p.First + "*" + p.Second.ToString("R", CultureInfo.InvariantCulture)));

    /// <summary>Search-split scores of a linear merge, memoised by (ids, weights) across task arithmetic and the final search.</summary>
    private async Task<double[]> SearchScoresOfMerge(IReadOnlyList<string> ids, IReadOnlyList<IWeightSet> models, IReadOnlyList<double> weights, CancellationToken ct)
    {
        string k = MergeKey(ids, weights);
        if (_searchMemo.TryGetValue(k, out var s)) return s;
        using (var merged = LinearMerge(models, weights))
            s = await Score(merged, EvaluationPurpose.Search, ct).ConfigureAwait(false);
        _searchMemo[k] = s;
        return s;
    }

    private static string Pct(double x) => (100 * x).ToString("F1", CultureInfo.InvariantCulture);

    private async Task<ReportRow> TaskArithmeticRow(RunState state, CancellationToken ct)
    {
        var ids = state.Experts.Select(e => CycleQDEngine.ExpertId(e.Name)).ToArray();
        var models = state.Experts.Select(e => _experts[e.Name]).ToArray();
        var byLambda = new JsonObject();
        double bestLambda = double.NaN, bestAvg = double.NegativeInfinity;
        double[]? bestSearch = null;
        foreach (double lambda in _config.Report.TaskArithmeticLambdas)
        {
            var w = Enumerable.Repeat(lambda, ids.Length).ToArray();
            var s = await SearchScoresOfMerge(ids, models, w, ct).ConfigureAwait(false);
            byLambda[lambda.ToString("R", CultureInfo.InvariantCulture)] = s.Average();
            _progress($"final: task arithmetic λ {lambda.ToString("0.###", CultureInfo.InvariantCulture)}: {SearchSplitName} average {Pct(s.Average())} %");
            if (s.Average() > bestAvg) { bestAvg = s.Average(); bestLambda = lambda; bestSearch = s; }
        }
        double[] test;
        double[]? retention;
        using (var merged = LinearMerge(models, Enumerable.Repeat(bestLambda, ids.Length).ToArray()))
        {
            test = await Score(merged, EvaluationPurpose.Report, ct).ConfigureAwait(false);
            retention = await RetentionScores(merged, ct).ConfigureAwait(false);
        }
        string l = bestLambda.ToString("0.###", CultureInfo.InvariantCulture);
        return new ReportRow("task_arithmetic", $"task arithmetic (λ {l})", bestSearch, test,
            $"base + λ Σ τ, λ {l} chosen on {SearchSplitName} from {_config.Report.TaskArithmeticLambdas.Count} values",
            new JsonObject { ["lambda"] = bestLambda, ["search_average_by_lambda"] = byLambda }) { Retention = retention };
    }

    private async Task<ReportRow> TiesRow(CancellationToken ct)
    {
        var r = _config.Report;
        string d = r.TiesDensity.ToString("0.###", CultureInfo.InvariantCulture), l = r.TiesLambda.ToString("0.###", CultureInfo.InvariantCulture);
        _progress($"final: TIES (density {d}, λ {l})");
        var source = TiesBaseline.Build(_config.Model.BasePath!, _config.Model.ExpertPaths.Select(p => p.Value).ToArray(), r.TiesDensity, r.TiesLambda);
        using var merged = _backend.Upload(source);
        var search = await Score(merged, EvaluationPurpose.Search, ct).ConfigureAwait(false);
        var test = await Score(merged, EvaluationPurpose.Report, ct).ConfigureAwait(false);
        var retention = await RetentionScores(merged, ct).ConfigureAwait(false);
        return new ReportRow("ties", $"TIES (density {d}, λ {l})", search, test,
            $"top {d} of each task vector by magnitude over the whole model, sign by sum, disjoint mean, λ {l}",
            new JsonObject { ["density"] = r.TiesDensity, ["lambda"] = r.TiesLambda, ["trim"] = "whole model" }) { Retention = retention };
    }

    /// <summary>A baseline model named in report.baselines, scored on the search and test splits like an expert.</summary>
    private async Task<ReportRow> BaselineRow(string key, string name, string path, CancellationToken ct)
    {
        using var file = SafetensorsModel.Open(path);
        using var baseFile = SafetensorsModel.Open(_config.Model.BasePath!);
        string? diff = ModelCompatibility.FirstDifference(baseFile, file);
        if (diff != null) throw new Core.ConfigurationException($"report.baselines.{name}: {path} does not fit the base model: {diff}");
        using var w = _backend.Upload(new SafetensorsHostSource(file, sortByName: true));
        return await ScoreRow(key, $"{name} (baseline)", w, null, $"report.baselines.{name}: {path}",
            new JsonObject { ["path"] = path }, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// The paper's final merge: θ_base + Σ_k β_k τ_k over each archive's best elite, β = softmax of its quality on its
    /// archive's task (search split) at temperature <see cref="FinalMergeSettings.SoftmaxTemperature"/>. Scored on both splits;
    /// written to final/model.safetensors when final_merge.method is softmax.
    /// </summary>
    private async Task<FinalSoftmax> SoftmaxMerge(IReadOnlyList<TaskArchive> archives, List<IWeightSet> opened, bool write, CancellationToken ct)
    {
        var bests = archives.Select(v => (v.Task, Best: FinalCandidates.RankedByQuality((v.Task, v.Archive.Cells)).First())).ToArray();
        var ids = bests.Select(b => b.Best.Elite.Id).ToArray();
        var q = bests.Select(b => b.Best.Elite.Scores[b.Task]).ToArray();
        double t = FinalMergeSettings.SoftmaxTemperature;
        var beta = SoftmaxMergeWeights.Of(q, t);
        var models = ids.Select(id => Resolve(id, opened)).ToArray();
        _progress($"final: softmax merge of the {ids.Length} archive bests, β [{string.Join(", ", beta.Select(x => x.ToString("0.###", CultureInfo.InvariantCulture)))}]");
        var search = await SearchScoresOfMerge(ids, models, beta, ct).ConfigureAwait(false);
        double[] test;
        double[]? retention;
        using (var merged = LinearMerge(models, beta))
        {
            if (write) WriteModel(merged);
            test = await Score(merged, EvaluationPurpose.Report, ct).ConfigureAwait(false);
            retention = await RetentionScores(merged, ct).ConfigureAwait(false);
        }
        return new FinalSoftmax
        {
            Formula = "base + sum_k beta_k * (best_k - base), beta = softmax(quality_k / temperature)",
            Temperature = t,
            Elites = bests.Select((b, i) => new FinalSoftmaxElite(Tasks[b.Task], ids[i], q[i], beta[i])).ToArray(),
            Weights = beta,
            SearchScores = FinalRecord.ByTask(Tasks, search),
            SearchAverage = search.Average(),
            TestScores = FinalRecord.ByTask(Tasks, test),
            TestAverage = test.Average(),
            RetentionScores = RetentionByTask(retention),
        };
    }

    private async Task<(ReportRow Softmax, ReportRow Search)> FinalRows(int generations, IReadOnlyList<TaskArchive> archives, CancellationToken ct)
    {
        var fm = _config.FinalMerge;
        bool softmaxFile = fm.Method == FinalMergeSettings.SoftmaxMethod;
        // Each weight set once (an expert or a child can lead several archives); generalists after the bests.
        var chosen = FinalCandidates.Select(FinalCandidates.Of(archives), fm.Top, fm.Generalists);
        var ids = chosen.Select(c => c.Elite.Id).ToArray();

        var previous = ReadFinal(generations, ids);
        FinalRecord final;
        if (previous != null && File.Exists(_dir.FinalModelPath))
        {
            _progress("final: final model of this generation count already written; kept");
            final = previous;
        }
        else
        {
            var clock = Stopwatch.StartNew();
            int before = Evaluations;
            var opened = new List<IWeightSet>();
            try
            {
                var softmax = await SoftmaxMerge(archives, opened, softmaxFile, ct).ConfigureAwait(false);
                var models = ids.Select(id => Resolve(id, opened)).ToArray();
                int max = FinalMergeSearch.MaxEvaluations(ids.Length, fm.Grid.Count, fm.Rounds);
                int n = 0;
                _progress($"final: merging {ids.Length} elite(s) ({string.Join(", ", chosen.Select(c => $"{Describe(c.Elite.Id)}: {Reason(archives, c)}"))}); weight search on {SearchSplitName}, at most {max} evaluations");
                var result = await FinalMergeSearch.RunAsync(ids.Length, fm.Grid, fm.Rounds,
                    async (w, c) => await SearchScoresOfMerge(ids, models, w, c).ConfigureAwait(false),
                    t => _progress(TrialLine(++n, max, t, SearchSplitName, clock.Elapsed)),
                    ct).ConfigureAwait(false);
                double searchSeconds = clock.Elapsed.TotalSeconds;
                int searchEvaluations = Evaluations - before;
                double[] test;
                double[]? retention;
                using (var merged = LinearMerge(models, result.Best.Weights))
                {
                    if (!softmaxFile) WriteModel(merged);
                    test = await Score(merged, EvaluationPurpose.Report, ct).ConfigureAwait(false);
                    retention = await RetentionScores(merged, ct).ConfigureAwait(false);
                }
                final = FinalJson(generations, archives, chosen, result, test, searchEvaluations, searchSeconds) with { Softmax = softmax, RetentionScores = RetentionByTask(retention) };
                final.Write(_dir.FinalJsonPath);
            }
            finally
            {
                foreach (var o in opened) o.Dispose();
            }
        }
        // ReadFinal accepts only a complete record of these tasks.
        var weights = final.Weights!.ToArray();
        var searchScores = FinalRecord.InTaskOrder(final.SearchScores, Tasks)!;
        var testScores = FinalRecord.InTaskOrder(final.TestScores, Tasks)!;
        string wText = string.Join(", ", weights.Select(x => x.ToString("0.###", CultureInfo.InvariantCulture)));
        string inFile = " (final/model.safetensors)";
        var searchRow = new ReportRow("final", "CycleQD final (search)", searchScores, testScores,
            $"base + Σ wᵢ (eliteᵢ − base) over {ids.Length} elite(s), w [{wText}] chosen on {SearchSplitName}{(softmaxFile ? "" : inFile)}",
            new JsonObject { ["final_json"] = "final/final.json", ["weights"] = new JsonArray(weights.Select(x => (JsonNode)x).ToArray()), ["in_model_file"] = !softmaxFile })
            { Retention = FinalRecord.InTaskOrder(final.RetentionScores, RetentionTasks) };
        var sm = final.Softmax!;
        var beta = sm.Weights!.ToArray();
        string bText = string.Join(", ", beta.Select(x => x.ToString("0.###", CultureInfo.InvariantCulture)));
        string temp = sm.Temperature!.Value.ToString("0.###", CultureInfo.InvariantCulture);
        var softmaxRow = new ReportRow("final_softmax", "CycleQD final (softmax)",
            FinalRecord.InTaskOrder(sm.SearchScores, Tasks)!, FinalRecord.InTaskOrder(sm.TestScores, Tasks)!,
            $"base + Σ β_k (best_k − base) over the {beta.Length} archive bests, β = softmax(quality / {temp}) = [{bText}]{(softmaxFile ? inFile : "")}",
            new JsonObject { ["final_json"] = "final/final.json", ["weights"] = new JsonArray(beta.Select(x => (JsonNode)x).ToArray()), ["temperature"] = sm.Temperature!.Value, ["in_model_file"] = softmaxFile })
            { Retention = FinalRecord.InTaskOrder(sm.RetentionScores, RetentionTasks) };
        return (softmaxRow, searchRow);
    }

    /// <summary>
    /// "final: weight search trial 3/53: weights [1, 0, 0] valid average 41.2 %  eta 00:01:20": the
    /// ETA assumes the remaining trials cost what the done ones did on average; the search usually
    /// stops earlier than <paramref name="max"/> (a weight vector tried before is not evaluated again).
    /// </summary>
    internal static string TrialLine(int k, int max, MergeTrial t, string split, TimeSpan elapsed)
    {
        var eta = TimeSpan.FromSeconds(elapsed.TotalSeconds / Math.Max(1, k) * Math.Max(0, max - k));
        string w = string.Join(", ", t.Weights.Select(x => x.ToString("0.###", CultureInfo.InvariantCulture)));
        return $"final: weight search trial {k}/{max}: weights [{w}] {split} average {Pct(t.Average)} %  eta {eta:hh\\:mm\\:ss}";
    }

    /// <summary>
    /// final.json when it belongs to this generation count, these elites, this evaluation and these
    /// final_merge settings, and holds every score the report rows need; else null.
    /// </summary>
    private FinalRecord? ReadFinal(int generations, IReadOnlyList<string> ids)
    {
        if (FinalRecord.TryRead(_dir.FinalJsonPath) is not { } f || f.Generations != generations) return null;
        if (f.Elites is not { } elites || !elites.Select(e => e.Id).SequenceEqual(ids)) return null;
        if (f.Evaluation != EvaluationKey(_config) || !SameSearchSettings(f, _config.FinalMerge) || f.Method != _config.FinalMerge.Method) return null;
        if (f.Weights?.Count != ids.Count || FinalRecord.InTaskOrder(f.SearchScores, Tasks) is null || FinalRecord.InTaskOrder(f.TestScores, Tasks) is null) return null;
        if (f.Softmax is not { Weights: not null, Temperature: not null } sm
            || FinalRecord.InTaskOrder(sm.SearchScores, Tasks) is null || FinalRecord.InTaskOrder(sm.TestScores, Tasks) is null) return null;
        if (RetentionTasks.Count > 0 && (FinalRecord.InTaskOrder(f.RetentionScores, RetentionTasks) is null || FinalRecord.InTaskOrder(sm.RetentionScores, RetentionTasks) is null)) return null;
        return f;
    }

    /// <summary>Why a candidate was taken, in words: "best of archive tinyskills/db" or "generalist rank 2 (mean search score 0.353)".</summary>
    private string Reason(IReadOnlyList<TaskArchive> archives, FinalCandidate c) => c.Reason switch
    {
        FinalCandidateReason.ArchiveBest => (c.Rank == 1 ? "best" : $"rank {c.Rank}") + (archives[c.Archive].Archive.IsMean
            ? $" on {Tasks[archives[c.Archive].Task]} of the mean archive" : $" of archive {Tasks[archives[c.Archive].Task]}"),
        _ => $"generalist rank {c.Rank} (mean {SearchSplitName} score {c.MeanScore.ToString("0.###", CultureInfo.InvariantCulture)})",
    };

    private FinalRecord FinalJson(int generations, IReadOnlyList<TaskArchive> archives, IReadOnlyList<FinalCandidate> chosen, MergeSearchResult result,
        double[] test, int evaluations, double seconds)
    {
        var fm = _config.FinalMerge;
        var elites = chosen.Select((c, i) =>
        {
            var (v, e) = (archives[c.Archive], c.Elite);
            return new FinalElite
            {
                Task = Tasks[v.Task],
                Cell = v.Archive.Unflatten(c.Cell),
                BcTasks = v.Archive.BcTasks.Select(t => Tasks[t]).ToArray(),
                Id = e.Id,
                Generation = e.Generation,
                SelectedAs = c.Reason == FinalCandidateReason.ArchiveBest ? "archive_best" : "generalist",
                Rank = c.Rank,
                Reason = Reason(archives, c),
                MeanSearchScore = c.MeanScore,
                Weight = result.Best.Weights[i],
                SearchScores = FinalRecord.ByTask(Tasks, e.Scores),
                File = EliteIds.IsExpert(e.Id) ? null : Path.Combine("elites", e.Id + ".safetensors"),
            };
        }).ToArray();
        return new FinalRecord
        {
            Format = FinalRecord.CurrentFormat,
            Method = fm.Method,
            ModelFile = fm.Method == FinalMergeSettings.SoftmaxMethod ? "the softmax merge (see softmax)" : "the searched merge (see weights, search)",
            Formula = "base + sum_i w_i * (elite_i - base), float32 arithmetic, stored in the base's dtypes",
            Generations = generations,
            Seed = _dir.Info.Seed.ToString(CultureInfo.InvariantCulture),
            Evaluation = EvaluationKey(_config),
            Model = "model.safetensors",
            BaseModel = _config.Model.BasePath,
            Elites = elites,
            Weights = result.Best.Weights.ToArray(),
            BaseWeight = 1 - result.Best.Weights.Sum(),
            Search = new FinalSearch
            {
                Split = SearchSplitName,
                Objective = "mean score over the tasks",
                TopPerArchive = fm.Top,
                Candidates = fm.Candidates,
                Generalists = fm.Generalists,
                Grid = fm.Grid.ToArray(),
                Rounds = fm.Rounds,
                Phases = "each elite alone; one shared weight over the grid; coordinate sweeps over the grid",
                Trials = result.Trials.Count,
                Evaluations = evaluations,
                Seconds = Math.Round(seconds, 2),
                Tried = result.Trials.Select(t => new FinalTrial(t.Weights.ToArray(), t.Average)).ToArray(),
            },
            SearchScores = FinalRecord.ByTask(Tasks, result.Best.Scores),
            SearchAverage = result.Best.Average,
            TestScores = FinalRecord.ByTask(Tasks, test),
            TestAverage = test.Average(),
        };
    }

    /// <summary>final/model.safetensors: the merged weights under the base's tensor names and dtypes, written atomically.</summary>
    private void WriteModel(IWeightSet merged)
    {
        Directory.CreateDirectory(_dir.FinalDirectory);
        var specs = merged.Tensors;
        var data = specs.Select((s, i) => new TensorData(s.Name, s.DType, s.Shape, stream =>
        {
            var bytes = new byte[s.ByteLength];
            _backend.Download(merged, i, bytes);
            stream.Write(bytes);
        })).ToArray();
        SafetensorsWriter.WriteFile(_dir.FinalModelPath, data, new Dictionary<string, string> { ["format"] = "pt" });
    }
}
