using CycleQD.Core;
using CycleQD.Core.Compute;
using CycleQD.Onnx.Runtime;
using CycleQD.Onnx.Sam;
using CycleQD.Segmentation.Sam;

namespace CycleQD.Runs.Families.Sam;

/// <summary>
/// Segment Anything models (Hugging Face SamModel folders) scored on sam/&lt;dataset&gt; tasks, each an
/// image/mask folder with its own metric and prompt (evaluation.sam). A task's held-out images
/// (evaluation.sam.T.test_split) are its report split; with one for every task the run ends with the
/// final merge and the test table, as Llama runs do.
/// </summary>
public sealed class SamFamily : IModelFamily
{
    /// <summary>The prefix of this family's task names.</summary>
    public const string TaskPrefix = "sam/";

    /// <inheritdoc/>
    public string Name => "sam";

    /// <inheritdoc/>
    public string TaskSyntax => "sam/<dataset>";

    /// <summary>Files of a SamModel folder that describe how images are prepared (resize, normalisation); carried when present.</summary>
    public static readonly IReadOnlyList<string> PreprocessorFileNames = ["preprocessor_config.json"];

    /// <inheritdoc/>
    public IReadOnlyList<string> ModelTypes { get; } = ["sam"];

    /// <inheritdoc/>
    public string ModelKind => "a Segment Anything model (SamModel)";

    /// <inheritdoc/>
    public ModelFolderFiles CarriedFiles(string folder)
    {
        folder = Path.GetFullPath(folder);
        ModelKindCheck.Require(folder, this, "a SAM run");
        string config = Path.Combine(folder, "config.json");
        _ = SamConfig.Load(config);
        return new ModelFolderFiles(folder, config, PreprocessorFileNames.Select(n => Path.Combine(folder, n)).Where(File.Exists).ToArray());
    }

    /// <inheritdoc/>
    public bool Owns(string task) => task.StartsWith(TaskPrefix, StringComparison.Ordinal) && task.Length > TaskPrefix.Length;

    /// <inheritdoc/>
    public bool ReportsByDefault(ExperimentConfig config) =>
        config.Evaluation.SamReport is { } r && config.Options.Tasks.All(r.ContainsKey);

    /// <inheritdoc/>
    public void Validate(ExperimentConfig config)
    {
        foreach (string t in config.Options.Tasks)
            if (config.Evaluation.Sam is null || !config.Evaluation.Sam.ContainsKey(t))
                throw new ConfigurationException($"tasks: '{t}' has no entry under evaluation.sam (its data folder, and optionally split, test_split, metric, prompt)");
        if (config.FinalMerge.Enabled && !ReportsByDefault(config))
            throw new ConfigurationException("final_merge.enabled: the final stage of a SAM run reports on held-out images; give every task evaluation.sam.<task>.test_split (or set final_merge.enabled: false)");
        // List and match every dataset now, so a bad folder fails before anything is written.
        foreach (var b in Benchmarks(config, EvaluationPurpose.Search).Concat(config.FinalMerge.Enabled ? Benchmarks(config, EvaluationPurpose.Report) : []))
            _ = b.Dataset;
    }

    /// <inheritdoc/>
    public Task CheckEnvironmentAsync(ExperimentConfig config, CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc/>
    public RunSplits MakeSplits(ExperimentConfig config)
    {
        var byTask = new Dictionary<string, TaskSplit>(StringComparer.Ordinal);
        foreach (string t in config.Options.Tasks)
        {
            var search = config.Evaluation.Sam![t].Data;
            var report = config.Evaluation.SamReport?.GetValueOrDefault(t)?.Data;
            byTask[t] = new TaskSplit(search.SplitFile is null ? "all" : Path.GetFileName(search.SplitFile), report?.SplitFile is null ? "search" : Path.GetFileName(report.SplitFile),
                new SamBenchmark(config.Evaluation.Sam[t]).Dataset.Samples.Select(s => s.Id).ToArray(),
                report is null ? null : new SamBenchmark(config.Evaluation.SamReport![t]).Dataset.Samples.Select(s => s.Id).ToArray());
        }
        return new RunSplits(byTask, config.Evaluation.SplitSeed);
    }

    /// <inheritdoc/>
    public RunModels LoadModels(ExperimentConfig config, IComputeBackend backend) => SafetensorsModels.Load(config, backend);

    private static List<SamBenchmark> Benchmarks(ExperimentConfig config, EvaluationPurpose purpose) =>
        config.Options.Tasks.Select(t => new SamBenchmark(purpose == EvaluationPurpose.Report && config.Evaluation.SamReport?.GetValueOrDefault(t) is { } r
            ? r : config.Evaluation.Sam![t])).ToList();

    /// <inheritdoc/>
    public IRunEvaluator OpenEvaluator(ExperimentConfig config, RunSplits splits) => Open(config, InferenceDevice.Cpu, 0);

    /// <inheritdoc/>
    /// <remarks>On the CUDA backend the encoder and decoder run on ONNX Runtime's CUDA provider on the backend's GPU and read each (float32) candidate in place.</remarks>
    public IRunEvaluator OpenEvaluator(ExperimentConfig config, RunSplits splits, IComputeBackend backend) =>
        backend is Cuda.Backend.CudaComputeBackend cuda ? Open(config, InferenceDevice.Cuda, cuda.Device.Ordinal) : OpenEvaluator(config, splits);

    private IRunEvaluator Open(ExperimentConfig config, InferenceDevice device, int cudaDevice)
    {
        var search = Benchmarks(config, EvaluationPurpose.Search);
        var report = Benchmarks(config, EvaluationPurpose.Report);
        foreach (var b in search.Concat(report)) _ = b.Dataset;
        var model = SamModel.Open(SafetensorsModels.Folder(config), device == InferenceDevice.Cpu ? config.Evaluation.Threads : 0, device, cudaDevice);
        try
        {
            var graph = SamWeightLayout.Encoder(model.Config).Concat(SamWeightLayout.Decoder(model.Config)).ToList();
            return new SamCandidateEvaluator(graph, host => model.WithWeights(host, "candidate"), model, config.Options.Tasks, search, report,
                tensors => model.WithWeightsInMemory(tensors, "candidate"), device == InferenceDevice.Cuda ? cudaDevice : null);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public IReadOnlyList<TaskCost> Costs(ExperimentConfig config, RunSplits splits) =>
        Benchmarks(config, EvaluationPurpose.Search).Select(b => new TaskCost(b.Name, b.Dataset.Samples.Count, b.Dataset.Samples.Count, 0,
            "one image-encoder and one mask-decoder run per image")).ToList();
}
