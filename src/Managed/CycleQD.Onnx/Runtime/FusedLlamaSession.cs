using CycleQD.Core;
using CycleQD.Onnx.Graph;
using CycleQD.Tensors;
using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Runtime;

/// <summary>
/// One ONNX Runtime session of the fused Llama graph (<see cref="FusedLlamaGraphBuilder"/>), on the CPU
/// provider (float32, float16) or the CUDA provider (float16, bfloat16). Weights are graph inputs as in
/// <see cref="LlamaSession"/>: one session serves every weight set of the architecture. Decoding goes
/// through <see cref="StartBatch"/>, whose KV buffers live in the provider's memory and are filled in
/// place by the attention operator (<see cref="Attention"/>). Runs are serialized (one at a time per session).
/// </summary>
public sealed class FusedLlamaSession : ILlamaSession
{
    private readonly InferenceSession _session;
    private readonly object _runLock = new();

    /// <inheritdoc />
    public LlamaConfig Config { get; }

    /// <inheritdoc />
    public LlamaGraphOptions Options { get; }

    /// <inheritdoc />
    public LlamaGraphKind Graph => LlamaGraphKind.Fused;

    /// <inheritdoc />
    public InferenceDevice Device { get; }

    /// <summary>The GPU (CUDA ordinal) the CUDA provider runs on; 0 on the CPU provider.</summary>
    public int CudaDevice { get; }

    /// <summary>The attention operator of the graph (<see cref="DefaultAttention"/>).</summary>
    public FusedAttention Attention { get; }

    /// <summary>Rotary frequencies of the config.</summary>
    internal RotaryTables Rotary { get; }

    /// <summary>The model weights the graph takes as inputs of their own: names and shapes.</summary>
    internal IReadOnlyList<LlamaWeightSpec> Weights { get; }

    /// <summary>The graph's inputs made of model weights stacked (with CachedAttention); a batch decoder stacks them.</summary>
    internal IReadOnlyList<PackedWeightSpec> PackedWeights { get; }

    /// <summary>Puts the KV buffers, rotary tables and selected rows where the session runs.</summary>
    internal DevicePlacement Placement { get; }

    /// <summary>Builds the fused graph for <paramref name="config"/> and opens a session on <paramref name="device"/> (GPU 0 for CUDA).</summary>
    /// <param name="config">The architecture (validated here).</param>
    /// <param name="options">Graph options; must ask for last-position logits (the decoder's contract). Float or Float16 on the CPU, Float16 or BFloat16 on CUDA.</param>
    /// <param name="device">Execution provider.</param>
    /// <param name="configPath">Names config.json in errors.</param>
    /// <param name="intraOpThreads">CPU threads for one operator (0 = ONNX Runtime's default).</param>
    /// <exception cref="TensorFormatException">the config cannot be represented.</exception>
    /// <exception cref="ArgumentException">an element type the provider's kernels lack, or full-sequence logits requested.</exception>
    /// <exception cref="ExecutionProviderUnavailableException">the CUDA provider cannot load.</exception>
    public FusedLlamaSession(LlamaConfig config, LlamaGraphOptions options, InferenceDevice device = InferenceDevice.Cpu, string configPath = "config.json", int intraOpThreads = 0)
        : this(config, options, device, configPath, intraOpThreads, cudaDevice: 0)
    {
    }

    /// <summary>Builds the fused graph for <paramref name="config"/> and opens a session on <paramref name="device"/>.</summary>
    /// <param name="config">The architecture (validated here).</param>
    /// <param name="options">Graph options; must ask for last-position logits (the decoder's contract). Float or Float16 on the CPU, Float16 or BFloat16 on CUDA.</param>
    /// <param name="device">Execution provider.</param>
    /// <param name="configPath">Names config.json in errors.</param>
    /// <param name="intraOpThreads">CPU threads for one operator (0 = ONNX Runtime's default).</param>
    /// <param name="cudaDevice">The GPU (CUDA ordinal) of the CUDA provider.</param>
    /// <exception cref="TensorFormatException">the config cannot be represented.</exception>
    /// <exception cref="ArgumentException">an element type the provider's kernels lack, or full-sequence logits requested.</exception>
    /// <exception cref="ExecutionProviderUnavailableException">the CUDA provider cannot load.</exception>
    /// <remarks>Open a session on another GPU through <see cref="ILlamaSession.Open"/>.</remarks>
    internal FusedLlamaSession(LlamaConfig config, LlamaGraphOptions options, InferenceDevice device, string configPath, int intraOpThreads, int cudaDevice)
        : this(config, options, device, configPath, intraOpThreads, cudaDevice, DefaultAttention(device, options.ElementType))
    {
    }

    /// <summary>As above, with the attention operator named (the tests run both on the CPU).</summary>
    /// <exception cref="ArgumentException">CachedAttention other than on the CPU in float32.</exception>
    /// <exception cref="InvalidOperationException">CachedAttention without its library (<see cref="CpuOperators.WhyUnavailable"/>).</exception>
    internal FusedLlamaSession(LlamaConfig config, LlamaGraphOptions options, InferenceDevice device, string configPath, int intraOpThreads, int cudaDevice, FusedAttention attention)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cudaDevice);
        LlamaGraphBuilder.Validate(config, configPath);
        if (!SupportsElementType(device, options.ElementType))
            throw new ArgumentException(device == InferenceDevice.Cuda
                ? "--graph fused: ONNX Runtime's GroupQueryAttention has no float32 CUDA kernel; use --dtype bfloat16 or float16 with --device cuda, or --graph plain"
                : "--graph fused: a BFloat16 graph needs the CUDA provider; the fused CPU graph runs Float and Float16");
        if (!options.LastPositionLogitsOnly)
            throw new ArgumentException("the fused session decodes batches and returns each row's last logits: build it with LastPositionLogitsOnly");
        if (!Supports(config))
            throw new TensorFormatException(configPath, null, $"head_dim {config.HeadDim}: ONNX Runtime's GroupQueryAttention needs a multiple of 8 (use --graph plain)");
        if (attention == FusedAttention.CachedAttention && (device != InferenceDevice.Cpu || options.ElementType != OnnxElementType.Float))
            throw new ArgumentException($"CachedAttention runs on the CPU in float32 only, not {device} {options.ElementType}", nameof(attention));
        Config = config;
        Options = options;
        Device = device;
        CudaDevice = cudaDevice;
        Attention = attention;
        Rotary = new RotaryTables(config);
        Weights = FusedLlamaGraphBuilder.GraphWeights(config, attention);
        PackedWeights = FusedLlamaGraphBuilder.PackedWeights(config, attention);
        using var so = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (intraOpThreads > 0) so.IntraOpNumThreads = intraOpThreads;
        // Worker threads that spin between operators steal the cores the next operator needs when the
        // machine is shared or small: generation measured several times slower with spinning (docs/perf.md).
        so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        if (device == InferenceDevice.Cuda) CudaProvider.Append(so, cudaDevice);
        byte[] model = FusedLlamaGraphBuilder.Build(config, options, attention).ToModelBytes();
        _session = attention == FusedAttention.CachedAttention ? CpuOperators.CreateSession(model, so) : new InferenceSession(model, so);
        Placement = new DevicePlacement(device, cudaDevice);
    }

    /// <summary>Whether the fused graph can represent <paramref name="config"/>: ONNX Runtime's GroupQueryAttention needs head_dim a multiple of 8.</summary>
    public static bool Supports(LlamaConfig config) => config.HeadDim % 8 == 0;

    /// <summary>
    /// Whether the provider of <paramref name="device"/> has the fused graph's kernels in <paramref name="type"/>:
    /// Float and Float16 on the CPU, Float16 and BFloat16 on CUDA.
    /// </summary>
    public static bool SupportsElementType(InferenceDevice device, OnnxElementType type) => device == InferenceDevice.Cuda
        ? type is OnnxElementType.Float16 or OnnxElementType.BFloat16
        : type is OnnxElementType.Float or OnnxElementType.Float16;

    /// <summary>Environment variable that, set to <c>group-query</c>, keeps ONNX Runtime's GroupQueryAttention on the CPU too.</summary>
    public const string CpuAttentionVariable = "CYCLEQD_CPU_ATTENTION";

    /// <summary>
    /// The attention operator a session on <paramref name="device"/> in <paramref name="type"/> uses:
    /// CycleQD's CachedAttention on the CPU in float32 when its library is available (measured faster,
    /// docs/perf.md) and <see cref="CpuAttentionVariable"/> is not <c>group-query</c>; ONNX Runtime's
    /// GroupQueryAttention otherwise.
    /// </summary>
    /// <exception cref="ConfigurationException"><see cref="CpuAttentionVariable"/> holds something else than <c>group-query</c> or <c>cached</c>.</exception>
    public static FusedAttention DefaultAttention(InferenceDevice device, OnnxElementType type) =>
        device == InferenceDevice.Cpu && type == OnnxElementType.Float && CpuOperators.IsAvailable &&
        !KeepsGroupQueryAttention(Environment.GetEnvironmentVariable(CpuAttentionVariable))
            ? FusedAttention.CachedAttention
            : FusedAttention.GroupQueryAttention;

    /// <summary>
    /// Whether <paramref name="value"/>, the value of <see cref="CpuAttentionVariable"/>, asks for
    /// GroupQueryAttention on the CPU: <c>group-query</c> yes; unset, empty or <c>cached</c> no.
    /// </summary>
    /// <exception cref="ConfigurationException">any other value: a typo must not silently pick the other operator.</exception>
    internal static bool KeepsGroupQueryAttention(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" or "cached" => false,
        "group-query" => true,
        _ => throw new ConfigurationException($"{CpuAttentionVariable}={value}: expected group-query (ONNX Runtime's GroupQueryAttention) or cached (CycleQD's CachedAttention, the default)"),
    };

    /// <inheritdoc />
    public IBatchDecoder StartBatch(LlamaWeights weights, int batch, int capacity)
    {
        if (weights.ElementType != Options.ElementType)
            throw new ArgumentException($"weights {weights.Source} are {weights.ElementType}; this session's graph is {Options.ElementType}");
        return new FusedBatchDecoder(this, weights, batch, capacity);
    }

    /// <summary>Runs the graph with <paramref name="binding"/>, one run at a time.</summary>
    internal void Run(OrtIoBinding binding, RunOptions runOptions)
    {
        lock (_runLock) _session.RunWithBinding(runOptions, binding);
    }

    /// <summary>New run options; <paramref name="shrink"/> hands the arena's empty regions back at the end of the run on CUDA.</summary>
    internal RunOptions NewRunOptions(bool shrink) => CudaProvider.NewRunOptions(Device, CudaDevice, shrink);

    /// <summary>A new IO binding of the main session.</summary>
    internal OrtIoBinding CreateBinding() => _session.CreateIoBinding();

    /// <inheritdoc />
    public void Dispose()
    {
        _session.Dispose();
        Placement.Dispose();
    }
}
