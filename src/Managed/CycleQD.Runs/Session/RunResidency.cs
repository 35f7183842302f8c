using CycleQD.Core.Compute;
using CycleQD.Cuda;
using CycleQD.Cuda.Backend;
using CycleQD.Runs.Families;
using CycleQD.Tensors;

namespace CycleQD.Runs;

/// <summary>
/// Where a run on the CUDA backend keeps its base, experts and parents: on the device when every
/// weight set of the run fits there next to the mutation's workspace (fastest), else on the host,
/// streamed to the device tensor by tensor (<see cref="WeightResidency.Streamed"/>: only the child,
/// staging buffers, the mutation's workspace and the evaluator's memory are on the device).
/// </summary>
public static class RunResidency
{
    /// <summary>Share of the card's memory the resident sets may take: the rest is the evaluator's (KV cache, activations).</summary>
    public const double ResidentShare = 0.75;

    /// <summary>The residency for <paramref name="config"/> on a card of <paramref name="deviceBytes"/>: resident when the run's sets fit its <see cref="ResidentShare"/>.</summary>
    public static WeightResidency Choose(ExperimentConfig config, long deviceBytes)
    {
        if (config.Model.BasePath is null) return WeightResidency.Resident;
        var specs = BaseTensors(config);
        var need = CudaComputeBackend.ResidentNeed(specs, config.Model.ExpertPaths.Count + CudaComputeBackend.RunSetsBesidesExperts,
            config.Options.Mutation.SvdRank, config.Options.Mutation.Oversampling);
        return need.TotalBytes <= deviceBytes * ResidentShare ? WeightResidency.Resident : WeightResidency.Streamed;
    }

    /// <summary>
    /// Opens GPU <paramref name="ordinal"/> with the residency <see cref="Choose"/> picks for <paramref name="config"/> (its total
    /// memory as the card's size); streamed, with the mutation's workspace capped at the streaming plan's.
    /// </summary>
    /// <exception cref="CudaUnavailableException">no usable GPU.</exception>
    public static CudaComputeBackend Open(ExperimentConfig config, int ordinal = 0)
    {
        var devices = CudaDeviceProbe.Probe().Devices;
        long total = devices.FirstOrDefault(d => d.Ordinal == ordinal)?.TotalMemoryBytes ?? 0;
        var residency = total > 0 ? Choose(config, total) : WeightResidency.Resident;
        // Streamed: the mutation's batches stay within the plan's workspace, so the evaluator's share
        // (KV cache, activations) is left free even before ONNX Runtime has allocated it.
        long workspace = residency == WeightResidency.Streamed && config.Model.BasePath is not null
            ? StreamingPlan(config, BaseTensors(config), total).PeakWorkspaceBytes
            : 0;
        return CudaComputeBackend.Create(ordinal, new CudaBackendOptions(residency, WorkspaceLimitBytes: workspace));
    }

    /// <summary>Generation batch and sequence length the streaming plan reserves the evaluator's KV cache for.</summary>
    public const int PlannedBatch = 64, PlannedTokens = 2048;

    /// <summary>
    /// The device memory of a streamed run of <paramref name="config"/> on a card with
    /// <paramref name="deviceBytes"/> free: the children in flight, staging for the base and two parents,
    /// the mutation's workspace and, for a Llama-family model, ONNX Runtime's KV cache and activations for
    /// <see cref="PlannedBatch"/> sequences of up to <see cref="PlannedTokens"/> tokens in the storage type.
    /// </summary>
    public static Cuda.Planning.StreamingMemoryPlan StreamingPlan(ExperimentConfig config, IReadOnlyList<TensorSpec> specs, long deviceBytes)
    {
        var evaluator = Cuda.Planning.EvaluatorMemory.None;
        if (LlamaConfigOf(config) is { } llama)
        {
            var graph = EvaluatorGraph(config, llama, specs);
            // The fused graph appends to one KV buffer in place; the plain graph holds the previous
            // and the new cache during a step.
            evaluator = Cuda.Planning.EvaluatorMemory.ForLlama(llama, StorageOf(specs), PlannedBatch, Math.Min(PlannedTokens, llama.MaxPositionEmbeddings),
                cacheCopies: graph == Onnx.Graph.LlamaGraphKind.Fused ? 1 : 2);
        }
        var mutation = config.Options.Mutation;
        // svd_rank 0 is full rank: the plan clips the rank to each shape's smaller side.
        var options = new Cuda.Planning.StreamingPlanOptions(Parents: 2, Children: config.Options.InFlight) with
        {
            Rank = mutation.SvdRank == 0 ? int.MaxValue : mutation.SvdRank,
            Oversampling = mutation.Oversampling >= 0 ? mutation.Oversampling : new Cuda.Planning.StreamingPlanOptions().Oversampling,
        };
        return Cuda.Planning.StreamingMemoryPlan.ForTensors(specs, deviceBytes, evaluator, options);
    }

    /// <summary>
    /// The graph a Llama-family run's evaluator uses on CUDA for the base's tensors <paramref name="specs"/>:
    /// evaluation.graph when given, else the default for their storage type (fused for float16 and bfloat16,
    /// plain for float32); null for other families.
    /// </summary>
    public static Onnx.Graph.LlamaGraphKind? EvaluatorGraph(ExperimentConfig config, IReadOnlyList<TensorSpec> specs) =>
        LlamaConfigOf(config) is { } llama ? EvaluatorGraph(config, llama, specs) : null;

    private static Onnx.Graph.LlamaGraphKind EvaluatorGraph(ExperimentConfig config, LlamaConfig llama, IReadOnlyList<TensorSpec> specs) =>
        config.Evaluation.Graph
        ?? Onnx.Runtime.ILlamaSession.DefaultGraph(Onnx.Runtime.InferenceDevice.Cuda, llama, Families.Llama.LlamaFamily.GraphType(StorageOf(specs)));

    /// <summary>The base's config.json for a Llama-family run; null for other families.</summary>
    private static LlamaConfig? LlamaConfigOf(ExperimentConfig config) =>
        Families.ModelFamilies.Of(config) == Families.ModelFamilies.Llama ? HfModelFolder.Open(SafetensorsModels.Folder(config)).Config : null;

    private static DType StorageOf(IReadOnlyList<TensorSpec> specs) => specs.Select(t => t.DType).Where(DTypes.IsWeightType).DefaultIfEmpty(DType.F32).First();

    /// <summary>The base's tensors (name, storage type, shape) from its safetensors header.</summary>
    internal static TensorSpec[] BaseTensors(ExperimentConfig config)
    {
        using var file = SafetensorsModel.Open(config.Model.BasePath!);
        return file.Tensors.Select(t => new TensorSpec(t.Name, t.DType, t.Shape)).ToArray();
    }
}
