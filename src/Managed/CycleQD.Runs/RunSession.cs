using System.Globalization;
using System.Text;
using CycleQD.Core;
using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Core.Evaluation;
using CycleQD.Core.Synthetic;
using CycleQD.Cuda.Backend;
using CycleQD.Onnx.Runtime;
using CycleQD.Onnx.Sam;
using CycleQD.Runs.Evaluation;
using CycleQD.Runs.Final;
using CycleQD.Segmentation.Sam;
using CycleQD.Tasks.TinySkills;
using CycleQD.Tensors;

namespace CycleQD.Runs;

/// <summary>
/// A run put together from its directory and experiment: backend, base and expert weights,
/// evaluator, engine. <see cref="Start"/> makes a new run directory; <see cref="Resume"/> continues one.
/// Owns everything it creates.
/// </summary>
public sealed class RunSession : IDisposable
{
    private readonly IComputeBackend _backend;
    private readonly IWeightSet _base;
    private readonly List<IWeightSet> _expertSets;
    private readonly RunState? _resumeFrom;
    // The Llama evaluator when the tasks are language tasks (the final stage needs it); SAM runs
    // have no final stage yet.
    private readonly LlamaCandidateEvaluator? _llm;
    private readonly IDisposable? _modelEvaluator;
    private readonly Dictionary<string, IWeightSet> _expertsByName = new(StringComparer.Ordinal);
    private RunReport? _report;

    /// <summary>The experiment as in force (seed overridden by the run's).</summary>
    public ExperimentConfig Config { get; }

    /// <summary>The run folder.</summary>
    public RunDirectory Directory { get; }

    /// <summary>The loop.</summary>
    public CycleQDEngine Engine { get; }

    /// <summary>Receives warnings that do not stop the run (a plot that could not be drawn).</summary>
    public Action<string>? Warn { get; set; }

    /// <summary>plots/elite_map_gen{N}.png for generation count <paramref name="generations"/>.</summary>
    public string PlotPath(int generations) => Path.Combine(Directory.Path, "plots", $"elite_map_gen{generations}.png");

    /// <summary>Generations to reach.</summary>
    public int TargetGenerations => Directory.Info.Generations;

    /// <summary>The backend's name ("cpu", "cuda:0").</summary>
    public string BackendName => _backend.Name;

    private RunSession(ExperimentConfig config, RunDirectory dir, RunState? resumeFrom, IComputeBackend backend)
    {
        Config = config;
        Directory = dir;
        _resumeFrom = resumeFrom;
        _expertSets = [];
        _backend = backend;
        try
        {
            ICandidateEvaluator evaluator;
            var experts = new List<Expert>();
            if (config.Model.Synthetic is { } syn)
            {
                var problem = new SyntheticProblem(config.Options.Tasks, syn);
                // Resident on a GPU: base, experts, the child being built and two parents.
                if (_backend is CudaComputeBackend gpu)
                    gpu.EnsureResidentFits(problem.BaseModel().Tensors, config.Options.Tasks.Count + 4, config.Options.Mutation);
                _base = _backend.Upload(problem.BaseModel());
                for (int k = 0; k < config.Options.Tasks.Count; k++)
                {
                    var w = _backend.Upload(problem.Expert(k));
                    _expertSets.Add(w);
                    experts.Add(new Expert(config.Options.Tasks[k], w));
                }
                evaluator = problem;
            }
            else
            {
                using (var baseFile = SafetensorsModel.Open(config.Model.BasePath!))
                    _base = _backend.Upload(new SafetensorsHostSource(baseFile, sortByName: true));
                foreach (var (task, path) in config.Model.ExpertPaths)
                {
                    using var file = SafetensorsModel.Open(path);
                    var w = _backend.Upload(new SafetensorsHostSource(file, sortByName: true));
                    _expertSets.Add(w);
                    _expertsByName[task] = w;
                    experts.Add(new Expert(task, w));
                }
                _llm = config.Evaluation.Sam is null ? CreateEvaluator(config) : null;
                var created = _llm is not null ? (ICandidateEvaluator)_llm : CreateSamEvaluator(config);
                _modelEvaluator = (IDisposable)created;
                evaluator = created;
            }
            Engine = new CycleQDEngine(config.Options, _backend, _base, experts, evaluator, dir.Elites, dir);
            dir.Bind(config.Options.Tasks, () => Engine.Archives);
            if (config.PlotEvery > 0)
                Engine.GenerationCompleted += r =>
                {
                    if ((r.Generation + 1) % config.PlotEvery == 0) Plot(r.Generation + 1);
                };
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The ONNX evaluator over the base model folder, one benchmark per task on the configured split.</summary>
    private static LlamaCandidateEvaluator CreateEvaluator(ExperimentConfig config)
    {
        string modelDir = System.IO.Directory.Exists(config.Model.BasePath) ? config.Model.BasePath! : Path.GetDirectoryName(config.Model.BasePath)!;
        var ev = config.Evaluation;
        var benchmarks = Benchmarks(config, ev.Split);
        var model = LlamaModel.Open(modelDir, InferenceDevice.Cpu, intraOpThreads: ev.Threads);
        try { return new LlamaCandidateEvaluator(model, config.Options.Tasks, benchmarks); }
        catch { model.Dispose(); throw; }
    }

    /// <summary>One benchmark per task of the experiment on <paramref name="split"/>.</summary>
    private static List<IBenchmark> Benchmarks(ExperimentConfig config, string split) =>
        config.Options.Tasks.Select(t => (IBenchmark)new TinySkillsBenchmark(new TinySkillsOptions
        {
            TinySkillsDir = config.Evaluation.TinySkillsDir!, Skill = t["tinyskills/".Length..], Split = split, Limit = config.Evaluation.Limit,
        })).ToList();

    /// <summary>The SAM evaluator: the base folder's SamModel sessions, a predictor over candidate host arrays, one benchmark per sam/&lt;dataset&gt; task.</summary>
    private static SamCandidateEvaluator CreateSamEvaluator(ExperimentConfig config)
    {
        string modelDir = System.IO.Directory.Exists(config.Model.BasePath) ? config.Model.BasePath! : Path.GetDirectoryName(config.Model.BasePath)!;
        var benchmarks = config.Options.Tasks.Select(t => new SamBenchmark(config.Evaluation.Sam![t])).ToList();
        // List and match every dataset now, so a bad folder fails before the first candidate.
        foreach (var b in benchmarks) _ = b.Dataset;
        var model = SamModel.Open(modelDir, config.Evaluation.Threads);
        try
        {
            var graph = SamWeightLayout.Encoder(model.Config).Concat(SamWeightLayout.Decoder(model.Config)).ToList();
            return new SamCandidateEvaluator(graph, host => model.WithWeights(host, "candidate"), model, config.Options.Tasks, benchmarks);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Checks that the base and every expert exist and have the same tensor names and shapes.</summary>
    internal static void CheckModelFiles(ExperimentConfig config)
    {
        string basePath = config.Model.BasePath!;
        if (!File.Exists(basePath) && !System.IO.Directory.Exists(basePath)) throw new ConfigurationException($"model.base: {basePath} not found");
        using var baseModel = SafetensorsModel.Open(basePath);
        baseModel.ThrowIfNonFinite();
        foreach (var (task, path) in config.Model.ExpertPaths)
        {
            if (!File.Exists(path) && !System.IO.Directory.Exists(path)) throw new ConfigurationException($"model.experts.{task}: {path} not found");
            using var expert = SafetensorsModel.Open(path);
            string? diff = ModelCompatibility.FirstDifference(baseModel, expert);
            if (diff != null) throw new ConfigurationException($"model.experts.{task}: incompatible with the base model: {diff}");
            expert.ThrowIfNonFinite();
        }
    }

    /// <summary>
    /// Creates <paramref name="outDir"/> (null: runs/NAME-yyyyMMdd-HHmmss under the current folder)
    /// for <paramref name="experimentPath"/> and prepares a fresh run.
    /// </summary>
    /// <param name="experimentPath">The experiment YAML.</param>
    /// <param name="outDir">Run directory to create.</param>
    /// <param name="generations">Total generations (null: the experiment's).</param>
    /// <param name="seed">Run seed (null: the experiment's).</param>
    /// <param name="device">Compute backend (see <see cref="BackendSelection"/>).</param>
    /// <param name="notice">Receives the one-line notice when <see cref="ComputeDevice.Auto"/> falls back to the CPU.</param>
    public static RunSession Start(string experimentPath, string? outDir, int? generations, ulong? seed,
        ComputeDevice device = ComputeDevice.Cpu, Action<string>? notice = null)
    {
        var config = ExperimentConfig.Load(experimentPath);
        outDir ??= Path.Combine("runs", $"{config.Name}-{DateTime.UtcNow:yyyyMMdd-HHmmss}");
        if (generations is < 0) throw new ConfigurationException($"--generations {generations}: must be ≥ 0");
        var info = new RunInfo(seed ?? config.Options.Seed, generations ?? config.Generations, Path.GetDirectoryName(Path.GetFullPath(experimentPath))!);
        config = config with { Options = config.Options with { Seed = info.Seed } };
        if (config.Model.Synthetic is null) CheckModelFiles(config);
        // Build (and so validate) everything before the directory exists, so a bad experiment leaves nothing behind.
        var probe = Path.GetFullPath(outDir);
        if (System.IO.Directory.Exists(probe) && System.IO.Directory.EnumerateFileSystemEntries(probe).Any())
            RunDirectory.Create(probe, "", info); // throws the "already holds a run" / "not empty" error
        var backend = BackendSelection.Create(device, config.Options.Mutation, notice);
        RunDirectory dir;
        try
        {
            dir = RunDirectory.Create(outDir, File.ReadAllText(experimentPath), info);
        }
        catch
        {
            backend.Dispose();
            throw;
        }
        return new RunSession(config, dir, null, backend);
    }

    /// <summary>Opens the run in <paramref name="runDir"/>; <paramref name="generations"/> (a total) raises its target.</summary>
    /// <param name="runDir">The run directory.</param>
    /// <param name="generations">Total generations to reach (null: the run's target).</param>
    /// <param name="device">Compute backend (see <see cref="BackendSelection"/>).</param>
    /// <param name="notice">Receives the one-line notice when <see cref="ComputeDevice.Auto"/> falls back to the CPU.</param>
    public static RunSession Resume(string runDir, int? generations, ComputeDevice device = ComputeDevice.Cpu, Action<string>? notice = null)
    {
        var dir = RunDirectory.Open(runDir);
        var config = ExperimentConfig.Parse(File.ReadAllText(dir.ConfigPath), dir.ConfigPath, dir.Info.ConfigDirectory);
        config = config with { Options = config.Options with { Seed = dir.Info.Seed } };
        var state = dir.ReadCheckpoint();
        if (config.Model.Synthetic is null) CheckModelFiles(config);
        if (generations is { } g)
        {
            if (g < state.NextGeneration) throw new ConfigurationException($"--generations {g}: the run has already done {state.NextGeneration}");
            dir.SetTarget(g);
        }
        return new RunSession(config, dir, state, BackendSelection.Create(device, config.Options.Mutation, notice));
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
            Directory.WriteSummary(Summary());
            if (!File.Exists(PlotPath(Engine.NextGeneration))) Plot(Engine.NextGeneration);
        }
        return done;
    }

    /// <summary>Whether <see cref="FinishAsync"/> has work to do: the final merge and report are on and not yet written for this generation count.</summary>
    public bool HasFinalStage => Config.FinalMerge.Enabled && _llm != null;

    /// <summary>The end-of-run report once <see cref="FinishAsync"/> has produced or found it.</summary>
    public RunReport? Report => _report;

    /// <summary>
    /// After the target is reached: the final merge and the test-split report (final/, report.json),
    /// unless this generation count already has them; then summary.md again, with the table.
    /// Returns the report (null when the experiment has no final stage).
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
            var stage = new FinalStage(Config, Directory, _backend, _base, _expertsByName, _llm!,
                Benchmarks(Config, Config.Evaluation.Split), Benchmarks(Config, "test"), Engine);
            _report = await stage.RunAsync(progress, cancellationToken).ConfigureAwait(false);
        }
        else progress($"final: already done for {Engine.NextGeneration} generations ({FinalStage.ReportPath(Directory)})");
        Directory.WriteSummary(Summary());
        return _report;
    }

    private bool _plotFailed;

    /// <summary>Draws the elite maps; a failure (e.g. no native Skia library) is reported once and the run goes on.</summary>
    private void Plot(int generations)
    {
        if (_plotFailed) return;
        try
        {
            EliteMapPlot.Write(PlotPath(generations), Engine.Archives, Config.Options.Tasks, generations);
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
        sb.AppendLine(ci, $"- sampling: {Config.Options.Sampling.Kind.ToString().ToLowerInvariant()}, crossover N({Config.Options.Crossover.Mean}, {Config.Options.Crossover.Std}²), mutation {Config.Options.Mutation.Kind.ToString().ToLowerInvariant()}");
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
            var best = a.Cells.Values.MaxBy(e => e.Scores[a.Task])!;
            sb.AppendLine(ci, $"| {tasks[a.Task]} | {a.Cells.Count} | {a.Coverage:P1} | {a.QdScore:F4} | {a.BestQuality:F4} | {best.Id} (gen {best.Generation}) | {string.Join(", ", best.Scores.Select(s => s.ToString("F4", ci)))} |");
        }
        if (_report != null)
        {
            sb.AppendLine().AppendLine("## Test split (accuracy, %)").AppendLine();
            sb.AppendLine(ci, $"Each model scored on the test split of every task (limit: {(Config.Evaluation.Limit?.ToString(ci) ?? "all prompts")}); ");
            sb.AppendLine(ci, $"\"valid average\" is the mean on the {Config.Evaluation.Split} split, where λ and the final merge's weights were chosen. ");
            sb.AppendLine("Machine-readable: report.json; the final model: final/model.safetensors and final/final.json.").AppendLine();
            sb.Append(_report.ToMarkdown());
        }
        return sb.ToString();
    }

    /// <summary>Releases the engine, weights and backend.</summary>
    public void Dispose()
    {
        Engine?.Dispose();
        foreach (var w in _expertSets) w.Dispose();
        _base?.Dispose();
        _modelEvaluator?.Dispose();
        _backend.Dispose();
    }
}
