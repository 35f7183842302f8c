using CycleQD.Core;
using CycleQD.Core.Compute;
using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Tensors;

namespace CycleQD.Runs.Families.Llama;

/// <summary>
/// Llama-family language models (model_type llama or mistral) scored on the text benchmarks of
/// <see cref="TextTasks"/>: MBPP+, AgentBench DB and OS (the paper's tasks) and the TinySkills demo
/// skills. Candidates run on ONNX Runtime through <see cref="LlamaCandidateEvaluator"/>.
/// </summary>
public sealed class LlamaFamily : IModelFamily
{
    /// <summary>
    /// The number type candidates are generated in, for the run's summary: float32, because ONNX
    /// Runtime's CPU provider has no bf16 kernels (bf16 checkpoints are widened once when bound).
    /// </summary>
    public const string PrecisionNote = "float32 on the CPU (ONNX Runtime's CPU provider has no bf16 kernels; the reference generates in bf16)";

    /// <inheritdoc/>
    public string Name => "llama";

    /// <inheritdoc/>
    public string TaskSyntax => TextTasks.Names;

    /// <inheritdoc/>
    public IReadOnlyList<string> ModelTypes { get; } = Tensors.LlamaConfig.SupportedModelTypes.Order(StringComparer.Ordinal).ToArray();

    /// <inheritdoc/>
    public string ModelKind => "a Llama-family language model";

    /// <inheritdoc/>
    public ModelFolderFiles CarriedFiles(string folder)
    {
        folder = Path.GetFullPath(folder);
        ModelKindCheck.Require(folder, this, "a Llama-family run");
        var hf = Tensors.HfModelFolder.Open(folder);
        return new ModelFolderFiles(hf.Directory, hf.ConfigPath, hf.TokenizerFiles);
    }

    /// <inheritdoc/>
    public bool Owns(string task) => TextTasks.Find(task) != null;

    /// <inheritdoc/>
    public bool ReportsByDefault(ExperimentConfig config) => true;

    /// <summary>The text data and harness settings of <paramref name="config"/>.</summary>
    public static TextTaskData DataOf(ExperimentConfig config)
    {
        var e = config.Evaluation;
        return new TextTaskData(e.DataDir, e.TinySkillsDir, e.Limit, e.DbLayout, e.DbConnection, e.OsRepeats, e.MbppSanitize, e.MbppTotalTimeCap)
        {
            PerplexityFile = e.PerplexityFile,
            PerplexityWindow = e.PerplexityWindow,
        };
    }

    /// <inheritdoc/>
    public void Validate(ExperimentConfig config)
    {
        var data = DataOf(config);
        foreach (string name in config.Options.Tasks)
        {
            var task = TextTasks.Find(name)!;
            if (task.LowerIsBetter)
                throw new ConfigurationException($"tasks: {name} is not a score in [0, 1] (its {task.Unit} is lower-is-better and unbounded), so it cannot be searched; list it under report.retention");
            task.CheckData(data);
            string search = config.Evaluation.Split ?? task.Splits[0];
            if (!task.Splits.Contains(search))
                throw new ConfigurationException($"evaluation.split: {name} has no split '{search}' (it offers {string.Join(", ", task.Splits)})");
        }
        foreach (string name in config.Report.Retention)
        {
            var task = TextTasks.Find(name)!;
            try
            {
                task.CheckData(data);
            }
            catch (ConfigurationException e)
            {
                throw new ConfigurationException($"report.retention: {name}: {e.Message}");
            }
            if (!task.Splits.Contains(RetentionSplit))
                throw new ConfigurationException($"report.retention: {name} has no {RetentionSplit} split (it offers {string.Join(", ", task.Splits)})");
        }
        if (config.Evaluation.Responder is { } r && r != WeightKeyedResponder.Name)
            throw new ConfigurationException($"evaluation.responder: '{r}' is not a responder (known: {WeightKeyedResponder.Name}; leave it out to run the model)");
    }

    /// <inheritdoc/>
    public async Task CheckEnvironmentAsync(ExperimentConfig config, CancellationToken cancellationToken)
    {
        var data = DataOf(config);
        foreach (string name in config.Options.Tasks)
        {
            try
            {
                await TextTasks.Find(name)!.CheckEnvironmentAsync(data, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
            {
                throw new TaskEnvironmentException($"task {name}: its environment does not start: {e.Message}", e);
            }
        }
    }

    /// <inheritdoc/>
    public RunSplits MakeSplits(ExperimentConfig config)
    {
        var data = DataOf(config) with { Limit = null };
        var byTask = new Dictionary<string, TaskSplit>(StringComparer.Ordinal);
        foreach (string name in config.Options.Tasks)
        {
            var task = TextTasks.Find(name)!;
            string search = config.Evaluation.Split ?? task.Splits[0];
            byTask[name] = new TaskSplit(search, "test", task.IdsOf(data, search, config.Evaluation.SplitSeed), task.IdsOf(data, "test", config.Evaluation.SplitSeed));
        }
        return new RunSplits(byTask, config.Evaluation.SplitSeed);
    }

    /// <inheritdoc/>
    public RunModels LoadModels(ExperimentConfig config, IComputeBackend backend) => SafetensorsModels.Load(config, backend);

    /// <summary>One benchmark per task of <paramref name="config"/> on <paramref name="purpose"/>'s split.</summary>
    public static IReadOnlyList<IBenchmark> Benchmarks(ExperimentConfig config, RunSplits splits, EvaluationPurpose purpose)
    {
        var data = DataOf(config);
        return config.Options.Tasks.Select(name =>
        {
            var (split, ids) = splits[name].For(purpose);
            return TextTasks.Find(name)!.Open(data, split, ids);
        }).ToList();
    }

    /// <summary>The split retention tasks are scored on: the report's.</summary>
    internal const string RetentionSplit = "test";

    /// <summary>One benchmark per report.retention task of <paramref name="config"/>, on its test split (test half for mbpp and agentbench_*).</summary>
    internal static IReadOnlyList<IBenchmark> RetentionBenchmarks(ExperimentConfig config)
    {
        var data = DataOf(config);
        return config.Report.Retention.Select(name =>
        {
            var task = TextTasks.Find(name)!;
            return task.Open(data, RetentionSplit, task.IdsOf(data with { Limit = null }, RetentionSplit, config.Evaluation.SplitSeed));
        }).ToList();
    }

    /// <inheritdoc/>
    public IRunEvaluator OpenEvaluator(ExperimentConfig config, RunSplits splits) => Open(config, splits, InferenceDevice.Cpu, 0, OnnxElementType.Float);

    /// <inheritdoc/>
    /// <remarks>
    /// On a backend that keeps its weight sets on a GPU (the CUDA backend), the model runs on ONNX
    /// Runtime's CUDA provider on that GPU, in the base's storage type (bfloat16 for Llama-3), and each
    /// candidate is bound where the backend wrote it. Elsewhere it runs on the CPU provider in float32.
    /// </remarks>
    public IRunEvaluator OpenEvaluator(ExperimentConfig config, RunSplits splits, IComputeBackend backend)
    {
        if (backend is not Cuda.Backend.CudaComputeBackend cuda) return OpenEvaluator(config, splits);
        if (config.Evaluation.Responder == WeightKeyedResponder.Name)
            throw new ConfigurationException($"evaluation.responder: {WeightKeyedResponder.Name} reads the candidates from host memory; run it with --device cpu");
        return Open(config, splits, InferenceDevice.Cuda, cuda.Device.Ordinal, GraphTypeOf(config));
    }

    /// <summary>The graph element type of a GPU evaluator: the base's storage type when every weight has it, else an error naming a tensor.</summary>
    private static OnnxElementType GraphTypeOf(ExperimentConfig config)
    {
        string folder = SafetensorsModels.Folder(config);
        using var weights = SafetensorsModel.Open(folder);
        var types = weights.Tensors.Select(t => t.DType).Where(DTypes.IsWeightType).Distinct().ToList();
        if (types.Count != 1)
            throw new ConfigurationException($"model.base: {folder} stores its weights as {string.Join(" and ", types.Select(DTypes.Name))}; " +
                                             "the GPU evaluator binds each candidate in place and needs one storage type (convert the base and experts to one)");
        return GraphType(types[0]);
    }

    /// <summary>The graph element type that binds weights stored as <paramref name="storage"/> in place.</summary>
    internal static OnnxElementType GraphType(DType storage) => storage switch
    {
        DType.BF16 => OnnxElementType.BFloat16,
        DType.F16 => OnnxElementType.Float16,
        _ => OnnxElementType.Float,
    };

    private static IRunEvaluator Open(ExperimentConfig config, RunSplits splits, InferenceDevice device, int cudaDevice, OnnxElementType elementType)
    {
        var search = Benchmarks(config, splits, EvaluationPurpose.Search);
        var report = Benchmarks(config, splits, EvaluationPurpose.Report);
        var retention = RetentionBenchmarks(config);
        Func<ITextGenerator, IReadOnlyDictionary<string, float[]>, ITextGenerator>? standIn = null;
        if (config.Evaluation.Responder == WeightKeyedResponder.Name)
        {
            // Perplexity reads the model's logits, never the stand-in's text: it has no gold responder.
            var gold = search.Concat(report).Concat(retention.Where(b => b is not PerplexityBenchmark))
                .Select((b, i) => (ITextGenerator)TextTasks.Find(b.Name)!.GoldResponder(b)).ToList();
            standIn = (_, arrays) => new WeightKeyedResponder(gold, arrays);
        }
        if (config.Evaluation.Graph == LlamaGraphKind.Fused && !FusedLlamaSession.SupportsElementType(device, elementType))
            throw new ConfigurationException($"evaluation.graph: fused runs {(device == InferenceDevice.Cuda ? "float16 or bfloat16 on CUDA (GroupQueryAttention has no float32 CUDA kernel)" : "float32 or float16 on the CPU")}, " +
                                             $"and this run's evaluator is {elementType} on {device}: use graph: plain, or leave it out");
        var model = LlamaModel.Open(SafetensorsModels.Folder(config), device, intraOpThreads: device == InferenceDevice.Cpu ? config.Evaluation.Threads : 0,
            elementType: elementType, graph: config.Evaluation.Graph, eos: EosChoice.Tokenizer, cudaDevice: cudaDevice,
            lanes: device == InferenceDevice.Cpu ? config.Evaluation.Lanes : 0,
            // The candidates are bound in place from the backend's device memory: the base's own weights
            // would be a second 16 GB set on an 8B run's GPU.
            deviceWeights: false);
        try
        {
            return new LlamaCandidateEvaluator(model, config.Options.Tasks, search, report, standIn)
            {
                Retention = retention,
                ScorerThreads = config.Evaluation.Threads,
            };
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public IReadOnlyList<Final.RetentionColumn> RetentionColumns(ExperimentConfig config) =>
        config.Report.Retention.Select(t => TextTasks.Find(t) is { } task ? new Final.RetentionColumn(t, task.Unit, task.LowerIsBetter)
            : throw new ConfigurationException($"report.retention: '{t}' is not a text task")).ToArray();

    /// <inheritdoc/>
    /// <remarks>
    /// With perplexity among the retention tasks: the text's path, its content's sha256 (a changed text
    /// makes the cached scores stale) and the window setting.
    /// </remarks>
    public string RetentionKey(ExperimentConfig config)
    {
        if (!config.Report.Retention.Contains(PerplexityBenchmark.TaskName) || config.Evaluation.PerplexityFile is not { } file) return "";
        string hash = File.Exists(file) ? Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(file))) : "missing";
        string window = config.Evaluation.PerplexityWindow?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "max";
        return $";perplexity={file};sha256={hash};window={window}";
    }

    /// <inheritdoc/>
    public IReadOnlyList<PinnedEnvironmentRecord> PinnedEnvironments(ExperimentConfig config, RunSplits splits) =>
        Benchmarks(config, splits, EvaluationPurpose.Search).OfType<IPinnedEnvironment>()
            .Select(b => new PinnedEnvironmentRecord(((IBenchmark)b).Name, b.EnvironmentName, b.EnvironmentFingerprint)).ToList();

    /// <inheritdoc/>
    public IReadOnlyList<TaskCost> Costs(ExperimentConfig config, RunSplits splits)
    {
        var data = DataOf(config);
        var search = Benchmarks(config, splits, EvaluationPurpose.Search);
        var costs = new List<TaskCost>();
        for (int t = 0; t < search.Count; t++)
        {
            string name = config.Options.Tasks[t];
            var task = TextTasks.Find(name)!;
            int samples = task.CountSamples(search[t]);
            var (calls, maxNew) = task.CallBudget(data);
            costs.Add(new TaskCost(name, samples, (long)samples * calls, (long)samples * calls * maxNew,
                calls == 1 ? $"one prompt per sample, at most {maxNew} new tokens" : $"at most {calls} model calls per sample (rounds × repeats), {maxNew} new tokens each"));
        }
        return costs;
    }
}

/// <summary>A task's environment (sandbox, database server) cannot start; the run stops before anything is written.</summary>
public sealed class TaskEnvironmentException(string message, Exception? inner = null) : Exception(message, inner);
