using System.Globalization;
using CycleQD.Core;
using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Core.Sampling;
using CycleQD.Core.Synthetic;
using CycleQD.Segmentation.Data;
using CycleQD.Segmentation.Metrics;
using CycleQD.Segmentation.Sam;
using CycleQD.Runs.Families;
using CycleQD.Tasks.AgentBenchDb;
using CycleQD.Tasks.Mbpp;
using CycleQD.Tensors;
using YamlDotNet.RepresentationModel;

namespace CycleQD.Runs;

/// <summary>Where the base model and the experts come from: the synthetic test problem, or safetensors on disk.</summary>
/// <param name="Synthetic">Set for the synthetic problem (then the paths are null).</param>
/// <param name="BasePath">Base model folder or .safetensors file (absolute).</param>
/// <param name="ExpertPaths">Expert per task name (absolute paths), in task order.</param>
public sealed record ModelSource(SyntheticProblemOptions? Synthetic, string? BasePath, IReadOnlyList<KeyValuePair<string, string>> ExpertPaths)
{
    /// <summary>
    /// model.synthetic.evaluation_seconds: a fixed sleep added to every evaluation of the synthetic
    /// problem, a simulated evaluation cost for scaling measurements (0: none).
    /// </summary>
    public double SimulatedEvaluationSeconds { get; init; }
}

/// <summary>How real models are scored (ignored by the synthetic problem).</summary>
/// <param name="Split">
/// The split the search scores on, for every task: null (the default) takes each task's own search
/// split (train, the even training half, for mbpp and agentbench_*; valid for tinyskills/*). "test"
/// or "all" selects on data the report also uses and is refused unless <paramref name="SelectOnTest"/> is set.
/// </param>
/// <param name="Limit">Score only the first N samples of each split (null: all).</param>
/// <param name="TinySkillsDir">The TinySkills folder holding tasks/&lt;skill&gt;/&lt;split&gt;.jsonl (absolute), for tinyskills/* tasks.</param>
/// <param name="Threads">CPU threads per ONNX Runtime operator (0: its default; a Llama model of at most 32 MiB then decodes in lanes, one per core: LlamaModel.LanePlan).</param>
/// <param name="Sam">Per sam/&lt;dataset&gt; task: its search data, prompt and metric (paths absolute); null when no task is a SAM one.</param>
/// <param name="DataDir">The benchmark data folder (absolute; holds mbpp/, agentbench_db/, agentbench_os/, cycleqd_prompts.json), for the paper's tasks.</param>
/// <param name="SplitSeed">Seed of the train/test halves of mbpp and agentbench_* (fixed in the run's splits.json at start).</param>
/// <param name="SelectOnTest">Allows a search split that overlaps the report's test split; the report then says the search selected on test.</param>
/// <param name="SamReport">Per sam/&lt;dataset&gt; task with a test_split: the held-out images the report scores.</param>
/// <param name="DbLayout">AgentBench DB: isolated (a database per sample, the default) or reference (the reference's shared table names).</param>
/// <param name="DbConnection">AgentBench DB: an existing server's connection string instead of a private MariaDB.</param>
/// <param name="OsRepeats">AgentBench OS: runs averaged into the score.</param>
/// <param name="MbppSanitize">MBPP+: apply the reference's sanitiser to completions.</param>
/// <param name="MbppTotalTimeCap">MBPP+: bound in seconds on one run of a task's inputs (null: none, as EvalPlus); see MbppPlusOptions.TotalTimeCapSeconds.</param>
/// <param name="Responder">null: the model answers; <c>scripted:weight-keyed-gold</c>: a stand-in that gives gold answers to a weight-dependent subset (tests the harnesses and the loop, never a model).</param>
public sealed record EvaluationSettings(string? Split = null, int? Limit = null, string? TinySkillsDir = null, int Threads = 0,
    IReadOnlyDictionary<string, SamTaskOptions>? Sam = null, string? DataDir = null, ulong SplitSeed = RunSplits.DefaultSeed, bool SelectOnTest = false,
    IReadOnlyDictionary<string, SamTaskOptions>? SamReport = null, DbLayout DbLayout = DbLayout.Isolated, string? DbConnection = null,
    int OsRepeats = EvaluationSettings.DefaultOsRepeats, bool MbppSanitize = true, string? Responder = null,
    double? MbppTotalTimeCap = MbppPlusOptions.DefaultTotalTimeCapSeconds)
{
    /// <summary>AgentBench OS runs per sample when evaluation.agentbench_os.repeats is not given (the reference's 5: init scripts draw random data).</summary>
    public const int DefaultOsRepeats = 5;

    /// <summary>How the search split is named in messages and reports ("train" per task default, or the one given).</summary>
    public string SplitLabel => Split ?? "search";

    /// <summary>evaluation.perplexity.file: the UTF-8 text file the perplexity task scores (absolute); null when not given.</summary>
    public string? PerplexityFile { get; init; }

    /// <summary>evaluation.perplexity.window: most tokens per perplexity window (null: the model's max_position_embeddings).</summary>
    public int? PerplexityWindow { get; init; }

    /// <summary>
    /// evaluation.graph: the ONNX graph a Llama-family model runs on (null: the default for the device and
    /// the weights' type, the fused graph wherever the provider has its kernels; plain: standard operators,
    /// any device and type, a second KV cache per step).
    /// </summary>
    public Onnx.Graph.LlamaGraphKind? Graph { get; init; }

    /// <summary>
    /// evaluation.lanes: CPU sessions of a Llama-family model that decode batches side by side, sharing
    /// the cores unless <see cref="Threads"/> sets each one's threads (0: <c>LlamaModel.LanePlan</c> picks:
    /// one per core, at most 8, one thread each, for a model of at most 32 MiB with the default threads;
    /// else 1). Ignored on CUDA, like the threads.
    /// </summary>
    public int Lanes { get; init; }
}

/// <summary>
/// The final merge after the last generation: the best <paramref name="Top"/> elites of every archive
/// (distinct weight sets) are merged as base + Σᵢ wᵢ (eliteᵢ − base), the weights chosen on the search
/// split by a grid search over one shared weight followed by <paramref name="Rounds"/> coordinate sweeps.
/// </summary>
/// <param name="Enabled">Whether the run ends with the final merge and the report (default: on for real models, off for the synthetic problem).</param>
/// <param name="Method">Which merge final/model.safetensors holds: "search" (task-vector weights searched on the search split;
/// "linear" is read as its old name) or "softmax" (the paper's: θ_base + Σ_k β_k τ_k over the archives' best elites,
/// β = softmax of each one's quality on its own archive's task, search split, temperature <see cref="SoftmaxTemperature"/>).
/// The report shows both rows either way.</param>
/// <param name="Top">Best elites taken from each archive (1..8 in all after removing duplicates).</param>
/// <param name="Grid">Weight values tried for each elite (and for the shared weight of the first phase).</param>
/// <param name="Rounds">Coordinate-search sweeps over the elites after the shared-weight phase (0: none).</param>
/// <param name="Candidates">
/// Which elites the weights are searched over: "best" (the best <paramref name="Top"/> of every archive) or
/// "best+generalists" (those, plus the <paramref name="Generalists"/> elites of all archives with the highest
/// mean search-split score over all tasks that are not already among them).
/// </param>
/// <param name="Generalists">Elites added by "best+generalists" (0 with "best").</param>
public sealed record FinalMergeSettings(bool Enabled, string Method, int Top, IReadOnlyList<double> Grid, int Rounds,
    string Candidates = FinalMergeSettings.BestCandidates, int Generalists = 0)
{
    /// <summary>The final merge by weight search.</summary>
    public const string SearchMethod = "search";

    /// <summary>The paper's final merge: softmax of the archive bests' qualities.</summary>
    public const string SoftmaxMethod = "softmax";

    /// <summary>The softmax's temperature: 1, the paper's (it states none, i.e. a plain softmax over the scores in [0, 1]).</summary>
    public const double SoftmaxTemperature = 1.0;

    /// <summary>Candidates: the best elites of each archive only.</summary>
    public const string BestCandidates = "best";

    /// <summary>Candidates: the best elites of each archive and the best generalists over all archives.</summary>
    public const string BestAndGeneralistsCandidates = "best+generalists";

    /// <summary>Generalists taken by "best+generalists" when final_merge.generalists is not given.</summary>
    public const int DefaultGeneralists = 1;

    /// <summary>0.1, 0.2, …, 1.0.</summary>
    public static IReadOnlyList<double> DefaultGrid { get; } = Enumerable.Range(1, 10).Select(i => i / 10.0).ToArray();

    /// <summary>
    /// The defaults for a run on real (<paramref name="enabled"/> = true) or synthetic models: top 1,
    /// best+generalists with one generalist (it found a better final model on the search split of the
    /// TinySkills runs, and was never worse; docs/running.md), the 0.1 … 1.0 grid, one sweep.
    /// </summary>
    public static FinalMergeSettings Default(bool enabled) => new(enabled, SearchMethod, 1, DefaultGrid, 1, BestAndGeneralistsCandidates, DefaultGeneralists);
}

/// <summary>The baselines of the end-of-run report (scored on the test split next to CycleQD's models).</summary>
/// <param name="TaskArithmeticLambdas">λ values of task arithmetic (base + λ Σ τᵢ) tried on the search split; the best is scored on test.</param>
/// <param name="TiesDensity">TIES: fraction of each task vector kept (largest magnitudes).</param>
/// <param name="TiesLambda">TIES: scale of the merged task vector.</param>
/// <param name="Baselines">Other models scored like the experts, by name (e.g. multitask → a model fine-tuned on every task's data); full paths.</param>
public sealed record ReportSettings(IReadOnlyList<double> TaskArithmeticLambdas, double TiesDensity = 0.2, double TiesLambda = 1.0,
    IReadOnlyList<KeyValuePair<string, string>>? Baselines = null)
{
    /// <summary><see cref="Baselines"/>, never null.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> BaselineModels => Baselines ?? [];

    /// <summary>
    /// report.retention: tasks the search does not optimise (no archive, not in the score vector) that the final
    /// table scores on their test split for every row, shown after the average (e.g. tinyskills/generic, perplexity):
    /// what a merged model keeps of the base's general abilities. Default: none.
    /// </summary>
    public IReadOnlyList<string> Retention { get; init; } = [];

    /// <summary>λ 0.1 … 1.0; TIES with the TinySkills reference parameters (density 0.2, λ 1).</summary>
    public static ReportSettings Default { get; } = new(FinalMergeSettings.DefaultGrid);
}


/// <summary>
/// An experiment file (YAML, read without reflection so that a trimmed build reads it too):
/// the algorithm's options, the models, the generation target and output settings. Every unknown
/// key or bad value raises one <see cref="ConfigurationException"/> naming the file, the key and the line.
/// </summary>
public sealed record ExperimentConfig(string Name, CycleQDOptions Options, int Generations, ModelSource Model, int PlotEvery, EvaluationSettings Evaluation,
    FinalMergeSettings FinalMerge, ReportSettings Report)
{
    /// <summary>
    /// Reads and validates <paramref name="path"/>. Relative paths in it (models, data folders) are
    /// resolved against the file's own folder, or against <paramref name="baseDirectory"/> when given
    /// (<c>run --base-dir</c>), never against the current folder.
    /// </summary>
    public static ExperimentConfig Load(string path, string? baseDirectory = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"experiment file not found: {path}", path);
        return Parse(File.ReadAllText(path), path, BaseDirectoryOf(path, baseDirectory));
    }

    /// <summary>The folder relative paths of <paramref name="path"/> are resolved against: <paramref name="baseDirectory"/> (absolute; it must exist) or the file's folder.</summary>
    public static string BaseDirectoryOf(string path, string? baseDirectory)
    {
        if (baseDirectory is null) return Path.GetDirectoryName(Path.GetFullPath(path))!;
        string full = Path.GetFullPath(baseDirectory);
        if (!System.IO.Directory.Exists(full)) throw new DirectoryNotFoundException($"--base-dir: folder not found: {full}");
        return full;
    }

    /// <summary>
    /// This experiment with command-line overrides: <paramref name="limit"/> (samples per task,
    /// <c>run --limit</c>) replaces evaluation.limit on every task, SAM datasets included;
    /// <paramref name="noFinal"/> (<c>run --no-final</c>) turns the final stage off.
    /// </summary>
    public ExperimentConfig WithOverrides(int? limit, bool noFinal)
    {
        if (limit is <= 0) throw new ConfigurationException($"--limit {limit}: must be positive");
        var config = this;
        if (limit is { } n)
        {
            static IReadOnlyDictionary<string, SamTaskOptions>? Limited(IReadOnlyDictionary<string, SamTaskOptions>? sam, int n) =>
                sam?.ToDictionary(kv => kv.Key, kv => kv.Value with { Data = kv.Value.Data with { Limit = n } }, StringComparer.Ordinal);
            var e = Evaluation;
            config = config with { Evaluation = e with { Limit = n, Sam = Limited(e.Sam, n), SamReport = Limited(e.SamReport, n) } };
        }
        if (noFinal) config = config with { FinalMerge = config.FinalMerge with { Enabled = false } };
        return config;
    }

    /// <summary>Generations when the file names none (the paper's 1200: 400 per task for three tasks).</summary>
    public const int DefaultGenerations = 1200;

    /// <summary>Parses YAML text; <paramref name="source"/> names it in errors, <paramref name="baseDirectory"/> anchors relative paths.</summary>
    public static ExperimentConfig Parse(string yaml, string source, string baseDirectory)
    {
        var root = YamlSettings.LoadRoot(yaml, source);
        var r = new YamlSettings(source);
        var top = r.Map(root, "", "name", "seed", "generations", "tasks", "model", "archive", "quality_task_interval", "sampling", "crossover", "mutation", "in_flight", "plots", "evaluation", "final_merge", "report");
        // Defaults come from the option records themselves, so the file format cannot drift from the library.
        var d = new CycleQDOptions { Tasks = [] };
        string name = r.String(top, "name", "experiment");
        ulong seed = r.ULong(top, "seed", d.Seed);
        int generations = r.Int(top, "generations", DefaultGenerations);
        if (generations < 0) throw r.Error(top["generations"]!, "generations", $"{generations} must be ≥ 0");
        var tasks = r.StringList(top, "tasks") ?? throw new ConfigurationException($"{source}: 'tasks' is required (a list of task names)");

        int bins = d.Bins;
        bool cycle = d.Cycle;
        var bounds = new Dictionary<string, ScoreBounds>(StringComparer.Ordinal);
        if (top.TryGetValue("archive", out var archiveNode))
        {
            var a = r.Map(archiveNode!, "archive", "bins", "bounds", "cycle");
            bins = r.Int(a, "bins", d.Bins, "archive.");
            cycle = r.Bool(a, "cycle", d.Cycle, "archive.");
            if (a.TryGetValue("bounds", out var bNode))
            {
                var bm = r.Map(bNode!, "archive.bounds", null);
                foreach (var (task, v) in bm)
                {
                    var pair = r.DoubleList(v!, $"archive.bounds.{task}");
                    if (pair.Count != 2) throw r.Error(v!, $"archive.bounds.{task}", "must be [lower, upper]");
                    bounds[task] = new ScoreBounds(pair[0], pair[1]);
                }
            }
        }

        var sampling = d.Sampling;
        if (top.TryGetValue("sampling", out var sNode))
        {
            var s = r.Map(sNode!, "sampling", "kind", "alpha_low", "alpha_high", "normaliser");
            sampling = new SamplingOptions(
                r.Enum(s, "kind", d.Sampling.Kind, "sampling."),
                r.Double(s, "alpha_low", d.Sampling.AlphaLow, "sampling."),
                r.Double(s, "alpha_high", d.Sampling.AlphaHigh, "sampling."),
                r.Enum(s, "normaliser", d.Sampling.Normaliser, "sampling."));
        }
        var crossover = d.Crossover;
        if (top.TryGetValue("crossover", out var cNode))
        {
            var c = r.Map(cNode!, "crossover", "mean", "std");
            crossover = new CrossoverOptions(r.Double(c, "mean", d.Crossover.Mean, "crossover."), r.Double(c, "std", d.Crossover.Std, "crossover."));
        }
        var mutation = d.Mutation;
        if (top.TryGetValue("mutation", out var mNode))
        {
            var m = r.Map(mNode!, "mutation", "kind", "svd_scale_max", "svd_rank", "svd_method", "power_iterations", "oversampling", "sigma", "include_embeddings", "basis");
            var dm = d.Mutation;
            mutation = new MutationOptions(
                r.Enum(m, "kind", dm.Kind, "mutation."),
                r.Double(m, "svd_scale_max", dm.SvdScaleMax, "mutation."),
                r.Int(m, "svd_rank", dm.SvdRank, "mutation."),
                r.Enum(m, "svd_method", dm.SvdMethod, "mutation."),
                r.Int(m, "power_iterations", dm.PowerIterations, "mutation."),
                r.Int(m, "oversampling", dm.Oversampling, "mutation."),
                r.Double(m, "sigma", dm.GaussianStd, "mutation."),
                r.Bool(m, "include_embeddings", dm.IncludeEmbeddings, "mutation."),
                r.Enum(m, "basis", dm.Basis, "mutation."));
        }
        int plotEvery = 0;
        if (top.TryGetValue("plots", out var pNode))
        {
            var p = r.Map(pNode!, "plots", "every");
            plotEvery = r.Int(p, "every", 0, "plots.");
        }

        var evaluation = top.TryGetValue("evaluation", out var eNode) ? ParseEvaluation(r, eNode!, tasks, baseDirectory) : new EvaluationSettings();

        var options = new CycleQDOptions
        {
            Tasks = tasks,
            Cycle = cycle,
            Bins = bins,
            Bounds = bounds,
            QualityTaskInterval = r.Int(top, "quality_task_interval", d.QualityTaskInterval),
            Sampling = sampling,
            Crossover = crossover,
            Mutation = mutation,
            InFlight = r.Int(top, "in_flight", d.InFlight),
            Seed = seed,
        };
        try { options.Validate(); }
        catch (ConfigurationException e) { throw new ConfigurationException($"{source}: {e.Message}"); }

        if (!top.TryGetValue("model", out var modelNode)) throw new ConfigurationException($"{source}: 'model' is required (model.synthetic, or model.base and model.experts)");
        var model = ParseModel(r, r.Map(modelNode!, "model", "synthetic", "base", "experts"), tasks, baseDirectory);
        var config = new ExperimentConfig(name, options, generations, model, plotEvery, evaluation, FinalMergeSettings.Default(false), ReportSettings.Default);
        var family = model.Synthetic is null ? CheckRealTasks(r, top, tasks) : ModelFamilies.Synthetic;
        var finalMerge = ParseFinalMerge(r, top, family.ReportsByDefault(config), tasks.Count, model.Synthetic is null);
        config = config with { FinalMerge = finalMerge, Report = ParseReport(r, top, baseDirectory, tasks, family) };
        try { family.Validate(config); }
        catch (ConfigurationException e) { throw new ConfigurationException($"{source}: {e.Message}"); }
        return config;
    }

    /// <summary>Real models are scored by benchmarks: every task must name one this build has; one family per run.</summary>
    private static IModelFamily CheckRealTasks(YamlSettings r, Dictionary<string, YamlNode?> top, IReadOnlyList<string> tasks)
    {
        var list = (YamlSequenceNode)top["tasks"]!;
        IModelFamily? family = null;
        for (int i = 0; i < tasks.Count; i++)
        {
            var owner = ModelFamilies.OwnerOf(tasks[i])
                ?? throw r.Error(list.Children[i], "tasks", $"'{tasks[i]}' is not a task this build can score real models on (known: {ModelFamilies.KnownTasks}; other names only with model.synthetic)");
            if (family != null && owner != family)
                throw r.Error(list.Children[i], "tasks", $"'{tasks[i]}' is a {owner.Name} task, but {tasks[0]} is a {family.Name} task; a run scores one model family");
            family = owner;
        }
        return family!;
    }

    /// <summary>The evaluation section.</summary>
    private static EvaluationSettings ParseEvaluation(YamlSettings r, YamlNode node, IReadOnlyList<string> tasks, string baseDirectory)
    {
        var d = new EvaluationSettings();
        var e = r.Map(node, "evaluation", "split", "split_seed", "select_on_test", "limit", "data", "tinyskills", "threads", "lanes", "graph", "sam", "responder", "agentbench_db", "agentbench_os", "mbpp", "perplexity");
        string? split = e.ContainsKey("split") ? r.String(e, "split", "", "evaluation.") : null;
        if (split is not (null or "train" or "valid" or "test" or "all"))
            throw r.Error(e["split"]!, "evaluation.split", $"'{split}' is not a split (train, valid, test or all; leave it out for each task's own search split)");
        bool selectOnTest = r.Bool(e, "select_on_test", d.SelectOnTest, "evaluation.");
        if (split is "test" or "all" && !selectOnTest)
            throw r.Error(e["split"]!, "evaluation.split", $"'{split}' makes the search select on the test data the final table reports; set evaluation.select_on_test: true to do it anyway (the report then says so)");
        int? limit = e.ContainsKey("limit") ? r.Int(e, "limit", 0, "evaluation.") : null;
        if (limit is <= 0) throw r.Error(e["limit"]!, "evaluation.limit", $"{limit} must be positive");
        int threads = r.Int(e, "threads", d.Threads, "evaluation.");
        if (threads < 0) throw r.Error(e["threads"]!, "evaluation.threads", $"{threads} must be ≥ 0");
        int lanes = r.Int(e, "lanes", d.Lanes, "evaluation.");
        if (lanes < 0) throw r.Error(e["lanes"]!, "evaluation.lanes", $"{lanes} must be ≥ 0 (0: one per core for a small model)");
        string? Folder(string key, string mustHold)
        {
            string v = r.String(e, key, "", "evaluation.");
            if (v.Length == 0) return null;
            string full = Path.GetFullPath(Path.Combine(baseDirectory, v));
            if (!System.IO.Directory.Exists(full)) throw r.Error(e[key]!, "evaluation." + key, $"{full} is not a folder{(File.Exists(full) ? " (it is a file)" : ": not found")}");
            if (!System.IO.Directory.Exists(Path.Combine(full, mustHold))) throw r.Error(e[key]!, "evaluation." + key, $"{full} has no {mustHold}/ folder");
            return full;
        }
        var db = d.DbLayout;
        string? connection = null;
        if (e.TryGetValue("agentbench_db", out var dbNode))
        {
            var m = r.Map(dbNode!, "evaluation.agentbench_db", "layout", "connection");
            db = r.Enum(m, "layout", d.DbLayout, "evaluation.agentbench_db.");
            string cs = r.String(m, "connection", "", "evaluation.agentbench_db.");
            connection = cs.Length == 0 ? null : cs;
        }
        int repeats = d.OsRepeats;
        if (e.TryGetValue("agentbench_os", out var osNode))
        {
            var m = r.Map(osNode!, "evaluation.agentbench_os", "repeats");
            repeats = r.Int(m, "repeats", d.OsRepeats, "evaluation.agentbench_os.");
            if (repeats < 1) throw r.Error(m["repeats"]!, "evaluation.agentbench_os.repeats", $"{repeats} must be at least 1");
        }
        bool sanitize = d.MbppSanitize;
        double? timeCap = d.MbppTotalTimeCap;
        if (e.TryGetValue("mbpp", out var mbppNode))
        {
            var m = r.Map(mbppNode!, "evaluation.mbpp", "sanitize", "total_time_cap");
            sanitize = r.Bool(m, "sanitize", d.MbppSanitize, "evaluation.mbpp.");
            if (m.ContainsKey("total_time_cap"))
            {
                // "none" is EvalPlus's rule (no bound beyond the sum of the per-input limits).
                timeCap = r.String(m, "total_time_cap", "", "evaluation.mbpp.") == "none" ? null : r.Double(m, "total_time_cap", 0, "evaluation.mbpp.");
                if (timeCap is double c && !(c > 0 && double.IsFinite(c)))
                    throw r.Error(m["total_time_cap"]!, "evaluation.mbpp.total_time_cap", $"{c} must be a positive number of seconds, or none (no cap, as EvalPlus)");
            }
        }
        string? perplexityFile = null;
        int? perplexityWindow = null;
        if (e.TryGetValue("perplexity", out var pplNode))
        {
            var m = r.Map(pplNode!, "evaluation.perplexity", "file", "window");
            string f = r.String(m, "file", "", "evaluation.perplexity.");
            if (f.Length == 0) throw r.Error(pplNode!, "evaluation.perplexity.file", "needs a UTF-8 text file to score");
            perplexityFile = Path.GetFullPath(Path.Combine(baseDirectory, f));
            if (m.ContainsKey("window"))
            {
                perplexityWindow = r.Int(m, "window", 0, "evaluation.perplexity.");
                if (perplexityWindow < 2) throw r.Error(m["window"]!, "evaluation.perplexity.window", $"{perplexityWindow} must be at least 2 tokens");
            }
        }
        string responder = r.String(e, "responder", "", "evaluation.");
        // The settings of a Llama-family model's generation have nothing to set in a SAM run.
        string? samTask = tasks.FirstOrDefault(t => ModelFamilies.Sam.Owns(t));
        Onnx.Graph.LlamaGraphKind? graph = null;
        if (e.ContainsKey("graph"))
        {
            graph = r.String(e, "graph", "", "evaluation.") switch
            {
                "fused" => Onnx.Graph.LlamaGraphKind.Fused,
                "plain" => Onnx.Graph.LlamaGraphKind.Plain,
                var other => throw r.Error(e["graph"]!, "evaluation.graph", $"'{other}' is not a graph (fused or plain; leave it out for the default of the device and the weights' type)"),
            };
            if (samTask != null)
                throw r.Error(e["graph"]!, "evaluation.graph", $"chooses a Llama-family model's graph; {samTask} runs SAM, whose graphs have no choice");
        }
        if (lanes > 0 && samTask != null)
            throw r.Error(e["lanes"]!, "evaluation.lanes", $"sets a Llama-family model's generation lanes; {samTask} runs SAM, which has none (use evaluation.threads)");
        var (sam, samReport) = e.TryGetValue("sam", out var samNode) ? ParseSam(r, samNode!, tasks, limit, baseDirectory) : (null, null);
        return new EvaluationSettings(split, limit, Folder("tinyskills", "tasks"), threads, sam, Folder("data", "."), r.ULong(e, "split_seed", d.SplitSeed, "evaluation."),
            selectOnTest, samReport, db, connection, repeats, sanitize, responder.Length == 0 ? null : responder, timeCap)
        { PerplexityFile = perplexityFile, PerplexityWindow = perplexityWindow, Graph = graph, Lanes = lanes };
    }

    private static FinalMergeSettings ParseFinalMerge(YamlSettings r, Dictionary<string, YamlNode?> top, bool reports, int taskCount, bool realModels)
    {
        var d = FinalMergeSettings.Default(reports);
        if (!top.TryGetValue("final_merge", out var node) || node is null) return FitDefault(d, taskCount);
        var f = r.Map(node, "final_merge", "enabled", "method", "top", "grid", "rounds", "candidates", "generalists");
        bool enabled = r.Bool(f, "enabled", d.Enabled, "final_merge.");
        if (enabled && !realModels)
            throw r.Error(f.TryGetValue("enabled", out var en) ? en! : node!, "final_merge.enabled", "the final merge and its report need real models (model.base and model.experts); the synthetic problem has no test split");
        string method = r.String(f, "method", d.Method, "final_merge.");
        if (method == "linear") method = FinalMergeSettings.SearchMethod;
        if (method is not (FinalMergeSettings.SearchMethod or FinalMergeSettings.SoftmaxMethod))
            throw r.Error(f["method"]!, "final_merge.method", $"'{method}' is not a final merge method (known: softmax, search; linear = search)");
        int topN = r.Int(f, "top", d.Top, "final_merge.");
        // The merge is one backend call with the base as an extra parent, and a merge takes at most 8 parents.
        if (topN < 1 || topN * taskCount > 7) throw r.Error(f["top"]!, "final_merge.top", $"{topN} × {taskCount} tasks must be between 1 and 7 elites in all");
        var grid = f.TryGetValue("grid", out var g) && g != null ? r.DoubleList(g, "final_merge.grid") : d.Grid;
        if (grid.Count == 0 || grid.Any(x => !double.IsFinite(x) || x < 0 || x > 4))
            throw r.Error(g!, "final_merge.grid", "must be a non-empty list of weights in [0, 4]");
        int rounds = r.Int(f, "rounds", d.Rounds, "final_merge.");
        if (rounds is < 0 or > 10) throw r.Error(f["rounds"]!, "final_merge.rounds", $"{rounds} must be between 0 and 10");

        var given = new FinalMergeSettings(enabled, method, topN, grid, rounds);
        bool candidatesGiven = f.TryGetValue("candidates", out var cNode) && cNode != null;
        bool countGiven = f.TryGetValue("generalists", out var gNode) && gNode != null;
        string candidates = r.String(f, "candidates", d.Candidates, "final_merge.");
        if (candidates == FinalMergeSettings.BestCandidates)
        {
            if (countGiven) throw r.Error(gNode!, "final_merge.generalists", "only used with candidates: best+generalists");
            return given;
        }
        if (candidates != FinalMergeSettings.BestAndGeneralistsCandidates)
            throw r.Error(cNode!, "final_merge.candidates",
                $"'{candidates}' is not a candidate set (known: {FinalMergeSettings.BestCandidates}, {FinalMergeSettings.BestAndGeneralistsCandidates})");
        int generalists = r.Int(f, "generalists", FinalMergeSettings.DefaultGeneralists, "final_merge.");
        given = given with { Candidates = candidates, Generalists = generalists };
        if (!candidatesGiven && !countGiven) return FitDefault(given, taskCount);
        if (generalists < 1 || topN * taskCount + generalists > 7)
            throw r.Error(countGiven ? gNode! : cNode!, "final_merge.generalists",
                $"{generalists} must be at least 1, and {topN} × {taskCount} tasks + {generalists} at most 7 elites in all");
        return given;
    }

    /// <summary>
    /// The default candidates when the file names none: the default generalist count shrinks to what
    /// the 7-elite limit leaves after top × tasks, and to "best" when nothing is left.
    /// </summary>
    private static FinalMergeSettings FitDefault(FinalMergeSettings s, int taskCount)
    {
        if (s.Candidates != FinalMergeSettings.BestAndGeneralistsCandidates) return s;
        int room = 7 - s.Top * taskCount;
        return room < 1 ? s with { Candidates = FinalMergeSettings.BestCandidates, Generalists = 0 } : s with { Generalists = Math.Min(s.Generalists, room) };
    }

    private static ReportSettings ParseReport(YamlSettings r, Dictionary<string, YamlNode?> top, string baseDirectory, IReadOnlyList<string> tasks, IModelFamily family)
    {
        var d = ReportSettings.Default;
        if (!top.TryGetValue("report", out var node)) return d;
        var m = r.Map(node!, "report", "task_arithmetic_lambdas", "ties_density", "ties_lambda", "baselines", "retention");
        var lambdas = m.TryGetValue("task_arithmetic_lambdas", out var l) && l != null ? r.DoubleList(l, "report.task_arithmetic_lambdas") : d.TaskArithmeticLambdas;
        if (lambdas.Count == 0 || lambdas.Any(x => !double.IsFinite(x) || x <= 0 || x > 4))
            throw r.Error(l!, "report.task_arithmetic_lambdas", "must be a non-empty list of values in (0, 4]");
        double density = r.Double(m, "ties_density", d.TiesDensity, "report.");
        if (!(density > 0 && density <= 1)) throw r.Error(m["ties_density"]!, "report.ties_density", $"{density} must be in (0, 1]");
        double lambda = r.Double(m, "ties_lambda", d.TiesLambda, "report.");
        if (!(lambda > 0 && lambda <= 4)) throw r.Error(m["ties_lambda"]!, "report.ties_lambda", $"{lambda} must be in (0, 4]");
        var baselines = new List<KeyValuePair<string, string>>();
        if (m.TryGetValue("baselines", out var bNode) && bNode != null)
            foreach (var (name, pathNode) in r.Map(bNode, "report.baselines", (string[]?)null))
            {
                string? v = pathNode is null ? null : r.Scalar(pathNode, "report.baselines." + name);
                if (string.IsNullOrWhiteSpace(v)) throw r.Error(pathNode ?? bNode, "report.baselines." + name, "needs a model folder or .safetensors file");
                string full = Path.GetFullPath(Path.Combine(baseDirectory, v));
                if (!File.Exists(full) && !System.IO.Directory.Exists(full)) throw r.Error(pathNode!, "report.baselines." + name, $"{full} not found");
                baselines.Add(new(name, full));
            }
        var retention = r.StringList(m, "retention") ?? d.Retention;
        foreach (var (task, i) in retention.Select((t, i) => (t, i)))
        {
            var at = ((YamlSequenceNode)m["retention"]!).Children[i];
            if (tasks.Contains(task))
                throw r.Error(at, "report.retention", $"'{task}' is a searched task (in tasks); retention lists tasks the search does not optimise");
            if (retention.Take(i).Contains(task)) throw r.Error(at, "report.retention", $"'{task}' is listed twice");
            if (family != ModelFamilies.Llama || Families.Llama.TextTasks.Find(task) is null)
                throw r.Error(at, "report.retention", $"'{task}' is not a task this run can score for retention (Llama-family runs: {Families.Llama.TextTasks.Names})");
        }
        return new ReportSettings(lambdas, density, lambda, baselines) { Retention = retention };
    }

    /// <summary>evaluation.sam: one mapping per sam/&lt;dataset&gt; task (data, split, metric, prompt, images, masks, mask_suffix).</summary>
    private static (Dictionary<string, SamTaskOptions> Search, Dictionary<string, SamTaskOptions>? Report) ParseSam(YamlSettings r, YamlNode node, IReadOnlyList<string> tasks, int? limit, string baseDir)
    {
        var result = new Dictionary<string, SamTaskOptions>(StringComparer.Ordinal);
        var report = new Dictionary<string, SamTaskOptions>(StringComparer.Ordinal);
        foreach (var (task, v) in r.Map(node, "evaluation.sam", null))
        {
            string key = "evaluation.sam." + task;
            if (!task.StartsWith("sam/", StringComparison.Ordinal) || task.Length == 4)
                throw r.Error(v ?? node, key, "keys are task names of the form sam/<dataset>");
            if (!tasks.Contains(task)) throw r.Error(v ?? node, key, $"'{task}' is not in tasks ({string.Join(", ", tasks)})");
            var m = r.Map(v ?? node, key, "data", "split", "test_split", "metric", "prompt", "images", "masks", "mask_suffix");
            string prefix = key + ".";
            string data = r.String(m, "data", "", prefix);
            if (data.Length == 0) throw r.Error(v!, prefix + "data", "is required: the dataset folder (holding images/ and masks/)");
            string dataDir = Path.GetFullPath(Path.Combine(baseDir, data));
            if (!System.IO.Directory.Exists(dataDir)) throw r.Error(m["data"]!, prefix + "data", $"{dataDir} not found");
            string? SplitFile(string k)
            {
                string split = r.String(m, k, "", prefix);
                string? splitPath = split.Length == 0 ? null : Path.GetFullPath(Path.Combine(baseDir, split));
                if (splitPath != null && !File.Exists(splitPath)) throw r.Error(m[k]!, prefix + k, $"{splitPath} not found");
                return splitPath;
            }
            string? splitPath = SplitFile("split");
            string? testPath = SplitFile("test_split");
            SegmentationMetric metric;
            try { metric = SegmentationMetricNames.Parse(r.String(m, "metric", "iou", prefix)); }
            catch (ArgumentException e) { throw r.Error(m["metric"]!, prefix + "metric", e.Message); }
            SamPromptKind prompt;
            try { prompt = GroundTruthPrompts.Parse(r.String(m, "prompt", "box", prefix)); }
            catch (ArgumentException e) { throw r.Error(m["prompt"]!, prefix + "prompt", e.Message); }
            result[task] = new SamTaskOptions
            {
                Name = task, Metric = metric, Prompt = prompt,
                Data = new SegmentationDatasetOptions
                {
                    DataDir = dataDir, SplitFile = splitPath, Limit = limit,
                    ImagesFolder = r.String(m, "images", "images", prefix), MasksFolder = r.String(m, "masks", "masks", prefix),
                    MaskSuffix = r.String(m, "mask_suffix", "", prefix),
                },
            };
            if (testPath != null)
                report[task] = result[task] with { Data = result[task].Data with { SplitFile = testPath } };
        }
        return (result, report.Count > 0 ? report : null);
    }

    private static ModelSource ParseModel(YamlSettings r, Dictionary<string, YamlNode?> m, IReadOnlyList<string> tasks, string baseDir)
    {
        if (m.TryGetValue("synthetic", out var syn))
        {
            if (m.ContainsKey("base") || m.ContainsKey("experts"))
                throw new ConfigurationException($"{r.Source}: model: give either 'synthetic' or 'base' + 'experts', not both");
            var s = syn is YamlMappingNode ? r.Map(syn, "model.synthetic", "layers", "rows", "cols", "dtype", "seed", "expert_strength", "expert_score", "evaluation_seconds") : [];
            string dt = r.String(s, "dtype", "bf16", "model.synthetic.");
            if (!DTypes.TryParse(dt.ToUpperInvariant(), out var dtype) || !DTypes.IsWeightType(dtype))
                throw new ConfigurationException($"{r.Source}: model.synthetic.dtype: '{dt}' is not f32, f16 or bf16");
            var o = new SyntheticProblemOptions(r.Int(s, "layers", 4, "model.synthetic."), r.Int(s, "rows", 64, "model.synthetic."),
                r.Int(s, "cols", 64, "model.synthetic."), dtype, r.ULong(s, "seed", 7, "model.synthetic."),
                r.Double(s, "expert_strength", 0.7, "model.synthetic."), r.Double(s, "expert_score", 0.7, "model.synthetic."));
            try { o.Validate(); }
            catch (ConfigurationException e) { throw new ConfigurationException($"{r.Source}: {e.Message}"); }
            double sleep = r.Double(s, "evaluation_seconds", 0, "model.synthetic.");
            if (!(sleep >= 0 && sleep <= 3600)) throw new ConfigurationException($"{r.Source}: model.synthetic.evaluation_seconds = {sleep}: must be in [0, 3600]");
            return new ModelSource(o, null, []) { SimulatedEvaluationSeconds = sleep };
        }
        string basePath = Path.GetFullPath(Path.Combine(baseDir, r.String(m, "base", "", "model.") is { Length: > 0 } b ? b
            : throw new ConfigurationException($"{r.Source}: model.base is required (a model folder or .safetensors file)")));
        if (!m.TryGetValue("experts", out var en)) throw new ConfigurationException($"{r.Source}: model.experts is required (task: path)");
        var experts = r.Map(en!, "model.experts", null);
        foreach (var task in experts.Keys)
            if (!tasks.Contains(task)) throw new ConfigurationException($"{r.Source}: model.experts: unknown task '{task}' (tasks: {string.Join(", ", tasks)})");
        var list = new List<KeyValuePair<string, string>>();
        foreach (var task in tasks)
        {
            if (!experts.TryGetValue(task, out var p) || p is not YamlScalarNode { Value.Length: > 0 } ps)
                throw new ConfigurationException($"{r.Source}: model.experts: no expert for task '{task}'");
            list.Add(new(task, Path.GetFullPath(Path.Combine(baseDir, ps.Value!))));
        }
        return new ModelSource(null, basePath, list);
    }
}
