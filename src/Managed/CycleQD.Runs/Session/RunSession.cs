using System.Globalization;
using System.Text;
using CycleQD.Core;
using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Runs.Families;
using CycleQD.Runs.Families.Llama;
using CycleQD.Runs.Final;

namespace CycleQD.Runs;

/// <summary>What the command line changes in an experiment for one run (<c>run --base-dir/--limit/--no-final</c>).</summary>
/// <param name="BaseDirectory">Folder relative paths of the experiment are resolved against (null: the experiment file's folder).</param>
/// <param name="Limit">Samples per task, replacing evaluation.limit (null: the experiment's).</param>
/// <param name="NoFinal">Skip the final stage.</param>
/// <param name="Threads">ONNX Runtime intra-op threads per evaluation session, replacing evaluation.threads (null: the experiment's); a setting of this machine, not kept for resume.</param>
public sealed record RunOverrides(string? BaseDirectory = null, int? Limit = null, bool NoFinal = false, int? Threads = null)
{
    /// <summary>No override.</summary>
    public static readonly RunOverrides None = new();
}

/// <summary>
/// Evaluation spread over worker processes through Redis (<c>run/resume --workers</c>).
/// </summary>
/// <param name="RedisUrl">redis://HOST:PORT[/DB] that the coordinator and its workers share.</param>
public sealed record DistributedOptions(string RedisUrl);

/// <summary>
/// A run put together from its directory and experiment: backend, base and expert weights,
/// evaluator, engine. It only orchestrates; what depends on the kind of model (task names, models,
/// evaluation, splits) comes from the experiment's <see cref="IModelFamily"/>.
/// <see cref="Start"/> makes a new run directory; <see cref="Resume"/> continues one. Everything that
/// can be checked (experiment, models, task environments, backend, evaluator) is opened before a
/// new directory is created, so a bad run leaves nothing behind. Owns everything it creates and
/// holds the run directory's lock until disposed.
/// </summary>
public sealed class RunSession : IDisposable
{
    private readonly IComputeBackend _backend;
    private readonly RunModels _models;
    private readonly IRunEvaluator _evaluator;
    private readonly RunState? _resumeFrom;
    private readonly Distributed.RemoteEvaluator? _remote;
    private readonly Distributed.WorkQueue? _queue;
    private RunReport? _report;

    /// <summary>The experiment as in force (seed overridden by the run's).</summary>
    public ExperimentConfig Config { get; }

    /// <summary>The model family scoring the run.</summary>
    public IModelFamily Family { get; }

    /// <summary>The splits every task is scored on.</summary>
    public RunSplits Splits { get; }

    /// <summary>The run folder.</summary>
    public RunDirectory Directory { get; }

    /// <summary>The loop.</summary>
    public CycleQDEngine Engine { get; }

    /// <summary>Receives warnings that do not stop the run (a plot that could not be drawn).</summary>
    public Action<string>? Warn { get; set; }

    /// <summary>plots/elite_map_gen{N}.png for generation count <paramref name="generations"/>.</summary>
    public string PlotPath(int generations) => Directory.PlotPath(generations);

    /// <summary>Generations to reach.</summary>
    public int TargetGenerations => Directory.Info.Generations;

    /// <summary>The backend's name ("cpu", "cuda:0").</summary>
    public string BackendName => _backend.Name;

    private RunSession(ExperimentConfig config, IModelFamily family, RunSplits splits, RunDirectory dir, RunState? resumeFrom,
        IComputeBackend backend, RunModels models, IRunEvaluator evaluator, DistributedOptions? workers, Action<string>? notice)
    {
        Config = config;
        Family = family;
        Splits = splits;
        Directory = dir;
        _resumeFrom = resumeFrom;
        _backend = backend;
        _models = models;
        _evaluator = evaluator;
        var experts = models.Experts.Select(e => new Expert(e.Key, e.Value)).ToList();
        // The expert-basis mutation decomposes each expert's task vector once per run; a resume reads the cached factors.
        var bases = config.Options.Mutation is { Kind: MutationKind.Svd, Basis: MutationBasis.Expert }
            ? ExpertSvdCache.LoadOrCompute(dir.Path, _backend, models.Base, models.Experts, config.Options.Mutation)
            : null;
        ICandidateEvaluator search = evaluator;
        if (workers != null)
        {
            // The run's key survives resumes, so jobs still out and results that came meanwhile are found again.
            var file = new Distributed.DistributedRunFile(Distributed.DistributedRunFile.TryRead(dir.Path)?.RunKey ?? Distributed.DistributedRunFile.NewKey(),
                Distributed.WorkerIdentity.Build, Distributed.WorkerIdentity.BackendKind(backend));
            // On the thread pool: blocking a caller's synchronization context on the client's own awaits could deadlock.
            var queue = _queue = Task.Run(() => Distributed.WorkQueue.ConnectAsync(workers.RedisUrl, file.RunKey, notice, TimeSpan.FromSeconds(30), CancellationToken.None))
                .GetAwaiter().GetResult();
            file.Write(dir.Path);
            search = _remote = Task.Run(() => new Distributed.RemoteEvaluator(queue, config.Options.Tasks, file.Backend, notice)).GetAwaiter().GetResult();
        }
        Engine = new CycleQDEngine(config.Options, _backend, models.Base, experts, search, dir.Elites, dir, bases);
        dir.Bind(config.Options.Tasks, () => Engine.Archives);
        if (config.PlotEvery > 0)
            Engine.GenerationCompleted += r =>
            {
                if ((r.Generation + 1) % config.PlotEvery == 0) Plot(r.Generation + 1);
            };
    }

    /// <summary>What a run opens before its directory exists: backend, models and evaluator; disposed together on failure.</summary>
    private sealed record Opened(IComputeBackend Backend, RunModels Models, IRunEvaluator Evaluator)
    {
        public void Dispose()
        {
            Evaluator.Dispose();
            Models.Dispose();
            Backend.Dispose();
        }
    }

    private static Opened Open(ExperimentConfig config, IModelFamily family, RunSplits splits, ComputeDevice device, Action<string>? notice)
    {
        var backend = BackendSelection.Create(device, config.Options.Mutation, notice, openCuda: () => RunResidency.Open(config));
        RunModels? models = null;
        try
        {
            models = family.LoadModels(config, backend);
            var evaluator = family.OpenEvaluator(config, splits, backend);
            return new Opened(backend, models, evaluator);
        }
        catch
        {
            models?.Dispose();
            backend.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Everything a run checks before it writes: the experiment file, the model files, and every
    /// task's environment (sandbox, database); returns the experiment with the run's seed and the
    /// family. Used by <see cref="Start"/> and by <c>run --dry-run</c>.
    /// </summary>
    /// <param name="experimentPath">The experiment YAML.</param>
    /// <param name="seed">Run seed (null: the experiment's).</param>
    /// <param name="cancellationToken">Stops the environment checks.</param>
    /// <param name="overrides">Base folder, sample limit and final stage given on the command line (null: none).</param>
    public static (ExperimentConfig Config, IModelFamily Family, RunSplits Splits) Prepare(string experimentPath, ulong? seed, CancellationToken cancellationToken = default,
        RunOverrides? overrides = null)
    {
        var o = overrides ?? RunOverrides.None;
        var config = WithThreads(ExperimentConfig.Load(experimentPath, o.BaseDirectory).WithOverrides(o.Limit, o.NoFinal), o.Threads);
        config = config with { Options = config.Options with { Seed = seed ?? config.Options.Seed } };
        var family = ModelFamilies.Of(config);
        if (config.Model.Synthetic is null) SafetensorsModels.Check(config);
        family.CheckEnvironmentAsync(config, cancellationToken).GetAwaiter().GetResult();
        return (config, family, family.MakeSplits(config));
    }

    /// <summary>
    /// Creates <paramref name="outDir"/> (null: runs/NAME-yyyyMMdd-HHmmss under the current folder)
    /// for <paramref name="experimentPath"/> and prepares a fresh run. Nothing is created when any
    /// check or any part of the set-up fails.
    /// </summary>
    /// <param name="experimentPath">The experiment YAML.</param>
    /// <param name="outDir">Run directory to create.</param>
    /// <param name="generations">Total generations (null: the experiment's).</param>
    /// <param name="seed">Run seed (null: the experiment's).</param>
    /// <param name="device">Compute backend (see <see cref="BackendSelection"/>).</param>
    /// <param name="notice">Receives the one-line notice when <see cref="ComputeDevice.Auto"/> falls back to the CPU.</param>
    /// <param name="overrides">Base folder, sample limit and final stage given on the command line; kept in run.json so that resume applies them too.</param>
    /// <param name="workers">Spread evaluation over workers through Redis (null: evaluate in this process).</param>
    public static RunSession Start(string experimentPath, string? outDir, int? generations, ulong? seed,
        ComputeDevice device = ComputeDevice.Cpu, Action<string>? notice = null, RunOverrides? overrides = null, DistributedOptions? workers = null)
    {
        if (generations is < 0) throw new ConfigurationException($"--generations {generations}: must be ≥ 0");
        var o = overrides ?? RunOverrides.None;
        var (config, family, splits) = Prepare(experimentPath, seed, overrides: o);
        outDir ??= Path.Combine("runs", $"{config.Name}-{DateTime.UtcNow:yyyyMMdd-HHmmss}");
        var info = new RunInfo(config.Options.Seed, generations ?? config.Generations, ExperimentConfig.BaseDirectoryOf(experimentPath, o.BaseDirectory), o.Limit, o.NoFinal);
        var probe = Path.GetFullPath(outDir);
        if (System.IO.Directory.Exists(probe) && System.IO.Directory.EnumerateFileSystemEntries(probe).Any())
            RunDirectory.Create(probe, "", info).Dispose(); // throws the "already holds a run" / "not empty" error
        var opened = Open(config, family, splits, device, notice);
        bool existed = System.IO.Directory.Exists(probe);
        RunDirectory? dir = null;
        try
        {
            dir = RunDirectory.Create(outDir, File.ReadAllText(experimentPath), info);
            RunDirectory.WriteAtomically(dir.SplitsPath, splits.ToJson());
            RunDirectory.WriteAtomically(dir.EnvironmentPath, EnvironmentJson(family.PinnedEnvironments(config, splits)));
            return new RunSession(config, family, splits, dir, null, opened.Backend, opened.Models, opened.Evaluator, workers, notice);
        }
        catch
        {
            opened.Dispose();
            dir?.Dispose();
            // The folder was absent or empty; leave it as it was.
            if (dir != null)
            {
                if (existed) foreach (var e in new DirectoryInfo(probe).EnumerateFileSystemInfos()) DeleteEntry(e);
                else System.IO.Directory.Delete(probe, recursive: true);
            }
            throw;
        }
    }

    private static void DeleteEntry(FileSystemInfo e)
    {
        if (e is DirectoryInfo d) d.Delete(recursive: true);
        else e.Delete();
    }

    /// <summary>
    /// Opens the run in <paramref name="runDir"/>, holding its lock; <paramref name="generations"/> (a
    /// total) raises its target. A run that stopped before its first checkpoint starts again from
    /// its experts.
    /// </summary>
    /// <param name="runDir">The run directory.</param>
    /// <param name="generations">Total generations to reach (null: the run's target).</param>
    /// <param name="device">Compute backend (see <see cref="BackendSelection"/>).</param>
    /// <param name="notice">Receives the one-line notice when <see cref="ComputeDevice.Auto"/> falls back to the CPU, and the fresh start of an unstarted run.</param>
    /// <param name="threads">ONNX Runtime intra-op threads per evaluation session, replacing evaluation.threads (null: the experiment's).</param>
    /// <param name="workers">Spread evaluation over workers through Redis (null: evaluate in this process).</param>
    public static RunSession Resume(string runDir, int? generations, ComputeDevice device = ComputeDevice.Cpu, Action<string>? notice = null, int? threads = null,
        DistributedOptions? workers = null)
    {
        var dir = RunDirectory.Open(runDir, exclusive: true);
        Opened? opened = null;
        try
        {
            var config = WithThreads(dir.Info.Apply(ExperimentConfig.Parse(File.ReadAllText(dir.ConfigPath), dir.ConfigPath, dir.Info.ConfigDirectory)), threads);
            config = config with { Options = config.Options with { Seed = dir.Info.Seed } };
            var family = ModelFamilies.Of(config);
            RunState? state = null;
            if (dir.HasCheckpoint)
            {
                state = dir.ReadCheckpoint();
                if (generations is { } g && g < state.NextGeneration)
                    throw new ConfigurationException($"--generations {g}: the run has already done {state.NextGeneration}");
                // The model files may have changed since the run started (a NaN written into an expert, say).
                if (config.Model.Synthetic is null) SafetensorsModels.Check(config);
            }
            else
            {
                notice?.Invoke($"{dir.Path}: the run stopped before its first checkpoint; starting it from its experts");
                dir.ResetUnstarted();
                if (config.Model.Synthetic is null) SafetensorsModels.Check(config);
                family.CheckEnvironmentAsync(config, CancellationToken.None).GetAwaiter().GetResult();
            }
            RunSplits splits;
            if (File.Exists(dir.SplitsPath)) splits = RunSplits.Read(dir.SplitsPath, config.Options.Tasks);
            else
            {
                // Runs made before splits.json existed scored every task on its named split files.
                splits = family.MakeSplits(config);
                RunDirectory.WriteAtomically(dir.SplitsPath, splits.ToJson());
            }
            CheckEnvironments(dir, family.PinnedEnvironments(config, splits), notice);
            if (generations is { } target) dir.SetTarget(target);
            opened = Open(config, family, splits, device, notice);
            return new RunSession(config, family, splits, dir, state, opened.Backend, opened.Models, opened.Evaluator, workers, notice);
        }
        catch
        {
            opened?.Dispose();
            dir.Dispose();
            throw;
        }
    }

    private static ExperimentConfig WithThreads(ExperimentConfig config, int? threads) =>
        threads is { } t ? config with { Evaluation = config.Evaluation with { Threads = t } } : config;

    private static byte[] EnvironmentJson(IReadOnlyList<PinnedEnvironmentRecord> environments)
    {
        var o = new System.Text.Json.Nodes.JsonObject();
        foreach (var e in environments)
            o[e.Task] = new System.Text.Json.Nodes.JsonObject { ["environment"] = e.Name, ["fingerprint"] = e.Fingerprint };
        return Encoding.UTF8.GetBytes(o.ToJsonString(Tensors.ReadableJson.Indented) + "\n");
    }

    /// <summary>
    /// A resume under other task environments (the OS root file system rebuilt, say) mixes scores that
    /// do not compare: said once, and environment.json keeps the hash the run started with.
    /// </summary>
    private static void CheckEnvironments(RunDirectory dir, IReadOnlyList<PinnedEnvironmentRecord> now, Action<string>? notice)
    {
        if (!File.Exists(dir.EnvironmentPath))
        {
            RunDirectory.WriteAtomically(dir.EnvironmentPath, EnvironmentJson(now));
            return;
        }
        var recorded = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(dir.EnvironmentPath))?.AsObject();
        foreach (var e in now)
        {
            string? was = recorded?[e.Task]?["fingerprint"]?.GetValue<string>();
            if (was != null && was != e.Fingerprint)
                notice?.Invoke($"warning: task {e.Task}: the {e.Name} is {e.Fingerprint}, the run started under {was}; scores from before and after this resume do not compare");
        }
    }

    /// <summary>Scores the experts (fresh run) or restores the checkpoint (resume).</summary>
    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        if (_resumeFrom is null) await Engine.InitializeAsync(cancellationToken).ConfigureAwait(false);
        else Engine.Restore(_resumeFrom);
    }

    /// <summary>Runs to the target (or until cancelled); writes summary.md when the target is reached. Returns whether it was.</summary>
    public async Task<bool> RunAsync(CancellationToken cancellationToken)
    {
        await Engine.RunAsync(TargetGenerations, cancellationToken).ConfigureAwait(false);
        bool done = Engine.NextGeneration >= TargetGenerations;
        if (done)
        {
            // Plots first: the summary links the ones that exist.
            if (!File.Exists(PlotPath(Engine.NextGeneration)) || !File.Exists(Directory.ProgressPlotPath)) Plot(Engine.NextGeneration);
            Directory.WriteSummary(Summary());
        }
        return done;
    }

    /// <summary>Whether <see cref="FinishAsync"/> has work to do: the final merge and report are on.</summary>
    public bool HasFinalStage => Config.FinalMerge.Enabled;

    /// <summary>The end-of-run report once <see cref="FinishAsync"/> has produced or found it.</summary>
    public RunReport? Report => _report;

    /// <summary>
    /// After the target is reached: the final merge and the report on the held-out split (final/,
    /// report.json), unless this generation count already has them; then summary.md again, with the
    /// table. Returns the report (null when the experiment has no final stage).
    /// </summary>
    /// <param name="progress">Receives one line per step.</param>
    /// <param name="cancellationToken">Stops between evaluations; what was written stays, and the next call goes on from it.</param>
    public async Task<RunReport?> FinishAsync(Action<string> progress, CancellationToken cancellationToken)
    {
        if (!HasFinalStage) return null;
        if (Engine.NextGeneration < TargetGenerations) throw new InvalidOperationException("the run has not reached its target");
        _report = FinalStage.Finished(Config, Directory, Engine.NextGeneration);
        if (_report is null)
        {
            var experts = _models.Experts.ToDictionary(e => e.Key, e => e.Value, StringComparer.Ordinal);
            var stage = new FinalStage(Config, Directory, _backend, _models.Base, experts, _evaluator, Engine);
            _report = await stage.RunAsync(progress, cancellationToken).ConfigureAwait(false);
        }
        else progress($"final: already done for {Engine.NextGeneration} generations ({Directory.ReportPath})");
        _report.SearchSplit = ModelFamilies.SearchSplitName(Config);
        Directory.WriteSummary(Summary());
        return _report;
    }

    private bool _plotFailed;

    /// <summary>Draws the elite maps and the progress plot; a failure (e.g. no native Skia library) is reported once and the run goes on.</summary>
    private void Plot(int generations)
    {
        if (_plotFailed) return;
        try
        {
            EliteMapPlot.Write(Directory.PlotPath(generations), Engine.Archives, Config.Options.Tasks, generations);
            ProgressPlot.Write(Directory.ProgressPlotPath, ProgressSeries.Read(Directory.MetricsPath, Config.Options.ArchiveNames));
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _plotFailed = true;
            Warn?.Invoke($"elite maps disabled: {e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>The text of summary.md.</summary>
    public string Summary()
    {
        var tasks = Config.Options.Tasks;
        var state = Engine.CaptureState();
        var sb = new StringBuilder();
        var ci = CultureInfo.InvariantCulture;
        sb.AppendLine(ci, $"# {Config.Name}: CycleQD run summary").AppendLine();
        sb.AppendLine(ci, $"- generations: {Engine.NextGeneration}");
        sb.AppendLine(ci, $"- seed: {Directory.Info.Seed}");
        sb.AppendLine(ci, $"- tasks: {string.Join(", ", tasks)}");
        sb.AppendLine(ci, $"- model: {(Config.Model.Synthetic != null ? "synthetic test problem" : Config.Model.BasePath)}");
        if (Family is LlamaFamily) sb.AppendLine(ci, $"- precision: {LlamaFamily.PrecisionNote}");
        sb.AppendLine(ci, $"- sampling: {Config.Options.Sampling.Kind.ToString().ToLowerInvariant()}, crossover N({Config.Options.Crossover.Mean}, {Config.Options.Crossover.Std}²), mutation {Config.Options.Mutation.Kind.ToString().ToLowerInvariant()}{(Config.Options.Cycle ? "" : "; without the cycle: one archive, quality = mean of the tasks")}");
        sb.AppendLine(ci, $"- elites stored: {Directory.Elites.Ids().Count}").AppendLine();
        sb.AppendLine("## Experts").AppendLine();
        sb.AppendLine("| expert | " + string.Join(" | ", tasks) + " |");
        sb.AppendLine("|---|" + string.Concat(tasks.Select(_ => "---|")));
        foreach (var e in state.Experts) sb.AppendLine(ci, $"| {e.Name} | {string.Join(" | ", e.Scores.Select(s => s.ToString("F4", ci)))} |");
        sb.AppendLine().AppendLine("## Archives").AppendLine();
        sb.AppendLine("| archive | elites | coverage | QD score | best | best elite | its scores |");
        sb.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var a in Engine.Archives)
        {
            var best = a.Cells.Values.MaxBy(e => a.QualityOf(e.Scores))!;
            sb.AppendLine(ci, $"| {CycleQDOptions.QualityName(a.Task, tasks)} | {a.Cells.Count} | {a.Coverage:P1} | {a.QdScore:F4} | {a.BestQuality:F4} | {best.Id} (gen {best.Generation}) | {string.Join(", ", best.Scores.Select(s => s.ToString("F4", ci)))} |");
        }
        AppendPlots(sb);
        if (_report != null)
        {
            sb.AppendLine().AppendLine("## Test split (accuracy, %)").AppendLine();
            sb.AppendLine(ci, $"Each model scored on the test split of every task (limit: {(Config.Evaluation.Limit?.ToString(ci) ?? "all prompts")}); ");
            sb.AppendLine(ci, $"\"{ModelFamilies.SearchSplitName(Config)} average\" is the mean on the search split, where λ and the final merge's weights were chosen. ");
            if (Config.Evaluation.SelectOnTest) sb.AppendLine("**The search selected on test data (evaluation.select_on_test): these test scores are not held out.** ");
            if (Config.Evaluation.Responder is { } responder) sb.AppendLine(ci, $"**Scored by the stand-in responder {responder}, not by the model: the numbers test the harnesses, not a model.** ");
            sb.AppendLine("Machine-readable: report.json; the final model: final/model.safetensors and final/final.json.").AppendLine();
            sb.Append(_report.ToMarkdown());
        }
        return sb.ToString();
    }

    /// <summary>Links the plots the run has drawn: progress first, then the elite maps, newest first.</summary>
    private void AppendPlots(StringBuilder sb)
    {
        var maps = System.IO.Directory.Exists(Directory.PlotsDirectory)
            ? System.IO.Directory.GetFiles(Directory.PlotsDirectory, "elite_map_gen*.png")
                .Select(f => (File: Path.GetFileName(f), Gen: int.TryParse(Path.GetFileNameWithoutExtension(f)["elite_map_gen".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int g) ? g : -1))
                .Where(m => m.Gen >= 0).OrderByDescending(m => m.Gen).ToList()
            : [];
        bool progress = File.Exists(Directory.ProgressPlotPath);
        if (maps.Count == 0 && !progress) return;
        sb.AppendLine().AppendLine("## Plots").AppendLine();
        if (progress)
            sb.AppendLine("QD score, coverage and best quality per archive over the generations:").AppendLine().AppendLine("![progress](plots/progress.png)").AppendLine();
        if (maps.Count > 0)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"Elite maps after {maps[0].Gen} generations (axes in behaviour-characteristic scores, experts marked, one colour scale for every archive):").AppendLine();
            sb.AppendLine(CultureInfo.InvariantCulture, $"![elite maps, generation {maps[0].Gen}](plots/{maps[0].File})").AppendLine();
            if (maps.Count > 1)
                sb.AppendLine("Earlier: " + string.Join(", ", maps.Skip(1).Select(m => string.Create(CultureInfo.InvariantCulture, $"[gen {m.Gen}](plots/{m.File})"))));
        }
    }

    /// <summary>Releases the engine, evaluator, weights and backend, then the run directory's lock.</summary>
    public void Dispose()
    {
        Engine.Dispose();
        if (_remote != null || _queue != null)
            Task.Run(async () =>
            {
                if (_remote != null) await _remote.DisposeAsync().ConfigureAwait(false);
                if (_queue != null) await _queue.DisposeAsync().ConfigureAwait(false);
            }).GetAwaiter().GetResult();
        _evaluator.Dispose();
        _models.Dispose();
        _backend.Dispose();
        Directory.Dispose();
    }
}
