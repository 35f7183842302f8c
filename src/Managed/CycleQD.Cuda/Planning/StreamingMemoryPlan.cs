using System.Globalization;
using System.Text;
using CycleQD.Core.Compute;
using CycleQD.Cuda.Streaming;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Planning;

/// <summary>
/// Device memory the evaluator (ONNX Runtime running the child in place) needs next to the backend:
/// its KV cache and an allowance for activations and logits.
/// </summary>
/// <param name="KvCacheBytes">Keys and values of every layer for the whole batch: 2 · layers · kv_heads · head_dim · bytes per element · batch · tokens.</param>
/// <param name="ActivationBytes">Activations, logits and the runtime's scratch while a batch runs.</param>
public sealed record EvaluatorMemory(long KvCacheBytes, long ActivationBytes)
{
    /// <summary>No evaluator on the device.</summary>
    public static EvaluatorMemory None { get; } = new(0, 0);

    /// <summary>KV cache plus activations.</summary>
    public long TotalBytes => checked(KvCacheBytes + ActivationBytes);

    /// <summary>2 · <paramref name="layers"/> · <paramref name="kvHeads"/> · <paramref name="headDim"/> · <paramref name="bytesPerElement"/> · <paramref name="batch"/> · <paramref name="tokens"/>.</summary>
    public static long KvCacheBytesFor(int layers, int kvHeads, int headDim, int bytesPerElement, int batch, int tokens) =>
        checked(2L * layers * kvHeads * headDim * bytesPerElement * batch * tokens);

    /// <summary>
    /// The evaluator of a Llama-family model stored as <paramref name="storage"/> generating for
    /// <paramref name="batch"/> sequences of up to <paramref name="tokens"/> tokens. The KV cache is in
    /// the storage type. Unless <paramref name="activationBytes"/> is given, the allowance is one layer's
    /// prefill activations over the whole batch, batch · tokens · (3 · hidden + 2 · kv_heads · head_dim
    /// + 3 · intermediate) elements of the storage type (input and output states, q/k/v, attention output,
    /// gate, up and their product), plus float32 logits of the last position (batch · vocab · 4 bytes).
    /// A model exported to return logits for every position needs batch · tokens · vocab · 4 bytes
    /// more: give the allowance yourself then. <paramref name="cacheCopies"/> is how many whole caches
    /// exist at once: 1 for a graph whose attention appends to one buffer in place (the fused graph),
    /// 2 for one that writes each step's cache as a new tensor beside the previous one (the plain graph).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">a batch or length below 1, a negative allowance, or cache copies other than 1 or 2.</exception>
    public static EvaluatorMemory ForLlama(LlamaConfig config, DType storage, int batch, int tokens, long? activationBytes = null, int cacheCopies = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        if (cacheCopies is not (1 or 2)) throw new ArgumentOutOfRangeException(nameof(cacheCopies), cacheCopies, "a step holds one cache (in place) or two (the previous and the new)");
        if (activationBytes < 0) throw new ArgumentOutOfRangeException(nameof(activationBytes), activationBytes, "the activation allowance must not be negative");
        int es = DTypes.SizeOf(storage);
        long kv = cacheCopies * KvCacheBytesFor(config.NumHiddenLayers, config.NumKeyValueHeads, config.HeadDim, es, batch, tokens);
        long perToken = 3L * config.HiddenSize + 2L * config.NumKeyValueHeads * config.HeadDim + 3L * config.IntermediateSize;
        long activations = activationBytes ?? checked((long)batch * tokens * perToken * es + (long)batch * config.VocabSize * sizeof(float));
        return new EvaluatorMemory(kv, activations);
    }
}

/// <summary>Knobs of the streaming plan.</summary>
/// <param name="Parents">Parents per merge (1 to 8): each is streamed through its own staging lane next to the base's.</param>
/// <param name="ChunkBytes">Bytes of one staging buffer (the backend's <see cref="Backend.CudaBackendOptions.StagingChunkBytes"/>).</param>
/// <param name="Rank">Rank of the truncated SVD (k).</param>
/// <param name="Oversampling">Randomized-SVD oversampling (p).</param>
/// <param name="RuntimeReserveBytes">CUDA context, cuBLAS/cuSOLVER workspaces and JIT-compiled modules (not in the backend's own count).</param>
/// <param name="Children">Children on the device at once (the engine's candidates in flight, each a whole weight set).</param>
public sealed record StreamingPlanOptions(
    int Parents = 2,
    long ChunkBytes = TensorStreamer.DefaultChunkBytes,
    int Rank = 256,
    int Oversampling = 16,
    long RuntimeReserveBytes = 1L << 30,
    int Children = 1);

/// <summary>
/// Where the bytes go in the CUDA backend's streamed mode (<see cref="Backend.WeightResidency.Streamed"/>):
/// <list type="bullet">
/// <item>on the device for the whole run: the child (one weight set in the storage type), which the
/// evaluator reads in place;</item>
/// <item>staging: 2 slots × (1 + parents) lanes × the chunk, allocated once (base, experts and parents
/// stay in host memory and pass through it);</item>
/// <item>per mutation batch: τ and the SVD's buffers of <see cref="DeviceMemoryPlan.BatchWorkspaceBytes"/>;
/// the batch per shape is the largest that fits next to everything else;</item>
/// <item>the evaluator (its KV cache and activations, an input) and the runtime reserve.</item>
/// </list>
/// Peak = child + staging + the largest batch workspace + evaluator + runtime reserve: the evaluator's
/// memory is counted as held throughout, since ONNX Runtime keeps its arena between runs.
/// </summary>
public sealed class StreamingMemoryPlan
{
    private StreamingMemoryPlan() { }

    /// <summary>What the plan is for ("BF16 weights", "12 tensors").</summary>
    public string Model { get; private init; } = "";
    /// <summary>The children on the device: <see cref="Children"/> whole weight sets.</summary>
    public long ChildBytes { get; private init; }
    /// <summary>Children on the device at once.</summary>
    public int Children { get; private init; }
    /// <summary>Staging lanes: the base and each parent.</summary>
    public int Lanes { get; private init; }
    /// <summary>Bytes of one staging buffer.</summary>
    public long ChunkBytes { get; private init; }
    /// <summary>Device staging buffers: 2 × <see cref="Lanes"/> × <see cref="ChunkBytes"/>.</summary>
    public long StagingBytes { get; private init; }
    /// <summary>The largest per-batch mutation workspace over the shape groups.</summary>
    public long PeakWorkspaceBytes { get; private init; }
    /// <summary>The evaluator's KV cache.</summary>
    public long EvaluatorKvCacheBytes { get; private init; }
    /// <summary>The evaluator's activations and logits allowance.</summary>
    public long EvaluatorActivationBytes { get; private init; }
    /// <summary>The runtime reserve.</summary>
    public long RuntimeReserveBytes { get; private init; }
    /// <summary>Device bytes the plan was made for.</summary>
    public long DeviceBytes { get; private init; }
    /// <summary>The 2-D weight shapes, with the batch chosen for each.</summary>
    public IReadOnlyList<ShapeGroup> Groups { get; private init; } = [];

    /// <summary>Device bytes the backend itself holds while it merges (children + staging): the high-water mark of a streamed merge.</summary>
    public long MergePeakBytes => ChildBytes + StagingBytes;

    /// <summary>Peak device bytes of the whole plan.</summary>
    public long PeakBytes => ChildBytes + StagingBytes + PeakWorkspaceBytes + EvaluatorKvCacheBytes + EvaluatorActivationBytes + RuntimeReserveBytes;

    /// <summary>True when the peak fits the device.</summary>
    public bool Fits => PeakBytes <= DeviceBytes;

    /// <summary>
    /// Plans a Llama-family model of <paramref name="config"/> stored as <paramref name="storage"/> on a device
    /// with <paramref name="deviceBytes"/> (use the driver's free memory at start-up) next to <paramref name="evaluator"/>.
    /// </summary>
    /// <exception cref="NotSupportedException">storage other than F32, F16, BF16.</exception>
    /// <exception cref="ArgumentOutOfRangeException">parents outside 1 to 8, or a bad chunk.</exception>
    public static StreamingMemoryPlan Create(LlamaConfig config, DType storage, long deviceBytes, EvaluatorMemory evaluator, StreamingPlanOptions? options = null)
    {
        if (storage is not (DType.F32 or DType.F16 or DType.BF16))
            throw new NotSupportedException($"weights stored as {DTypes.Name(storage)}; the plan covers F32, F16, BF16");
        long child = checked(config.ParameterCount * DTypes.SizeOf(storage));
        var shapes = DeviceMemoryPlan.Shapes(config);
        return Build($"{DTypes.Name(storage)} weights", child, shapes, deviceBytes, evaluator, options ?? new StreamingPlanOptions());
    }

    /// <summary>Plans a model with the tensors <paramref name="tensors"/> (2-D ones are mutated, grouped by shape).</summary>
    /// <exception cref="ArgumentOutOfRangeException">parents outside 1 to 8, or a bad chunk.</exception>
    public static StreamingMemoryPlan ForTensors(IReadOnlyList<TensorSpec> tensors, long deviceBytes, EvaluatorMemory evaluator, StreamingPlanOptions? options = null)
    {
        long child = tensors.Sum(t => t.ByteLength);
        var shapes = tensors.Where(t => t.Shape.Length == 2 && t.ElementCount > 0)
            .GroupBy(t => (Rows: checked((int)t.Shape[0]), Cols: checked((int)t.Shape[1])))
            .Select(g => (g.Key.Rows, g.Key.Cols, g.Count(), string.Join(", ", g.Select(t => t.Name))))
            .ToList();
        return Build($"{tensors.Count} tensors", child, shapes, deviceBytes, evaluator, options ?? new StreamingPlanOptions());
    }

    private static StreamingMemoryPlan Build(string model, long child, List<(int Rows, int Cols, int Count, string Names)> shapes, long deviceBytes,
        EvaluatorMemory evaluator, StreamingPlanOptions options)
    {
        ArgumentNullException.ThrowIfNull(evaluator);
        if (options.Parents is < 1 or > 8)
            throw new ArgumentOutOfRangeException(nameof(options), options.Parents, "a merge takes 1 to 8 parents");
        if (options.Children < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.Children, "at least one child is on the device");
        child = checked(child * options.Children);
        if (options.ChunkBytes <= 0 || options.ChunkBytes % TensorStreamer.ChunkAlignment != 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.ChunkBytes, $"the staging chunk must be a positive multiple of {TensorStreamer.ChunkAlignment} bytes");
        int lanes = 1 + options.Parents;
        long staging = TensorStreamer.StagingBytes(lanes, options.ChunkBytes);
        long available = deviceBytes - child - staging - evaluator.TotalBytes - options.RuntimeReserveBytes;
        var groups = DeviceMemoryPlan.FitBatches(shapes, available, new DeviceMemoryPlanOptions(options.Rank, options.Oversampling));
        return new StreamingMemoryPlan
        {
            Model = model,
            ChildBytes = child,
            Children = options.Children,
            Lanes = lanes,
            ChunkBytes = options.ChunkBytes,
            StagingBytes = staging,
            PeakWorkspaceBytes = groups.Count == 0 ? 0 : groups.Max(g => g.WorkspaceBytes),
            EvaluatorKvCacheBytes = evaluator.KvCacheBytes,
            EvaluatorActivationBytes = evaluator.ActivationBytes,
            RuntimeReserveBytes = options.RuntimeReserveBytes,
            DeviceBytes = deviceBytes,
            Groups = groups,
        };
    }

    /// <summary>Throws when the plan does not fit, naming every number.</summary>
    /// <exception cref="DeviceMemoryException">the peak exceeds the device memory.</exception>
    public void EnsureFits(string deviceName)
    {
        if (Fits) return;
        throw new DeviceMemoryException(
            $"{deviceName} has {GiB(DeviceBytes)} GiB free but streaming this model ({Model}) needs {GiB(PeakBytes)} GiB at peak " +
            $"({ChildrenText} {GiB(ChildBytes)} GiB, staging {GiB(StagingBytes)} GiB = 2 x {Lanes} lanes x {GiB(ChunkBytes)} GiB, " +
            $"mutation workspace {GiB(PeakWorkspaceBytes)} GiB at the smallest batches, evaluator KV cache {GiB(EvaluatorKvCacheBytes)} GiB, " +
            $"evaluator activations {GiB(EvaluatorActivationBytes)} GiB, runtime reserve {GiB(RuntimeReserveBytes)} GiB); " +
            "use a smaller evaluation batch or length, a larger card or the CPU backend");
    }

    /// <summary>A human-readable table of the plan (GiB = 2^30 bytes).</summary>
    public string Describe()
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"streaming memory plan ({Model}, {GiB(DeviceBytes)} GiB on the device):");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  device    {ChildrenText,-28} {GiB(ChildBytes),8} GiB");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  staging   2 x {Lanes} lanes x chunk     {GiB(StagingBytes),8} GiB");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  mutation  largest batch          {GiB(PeakWorkspaceBytes),8} GiB");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  evaluator KV cache               {GiB(EvaluatorKvCacheBytes),8} GiB");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  evaluator activations + logits   {GiB(EvaluatorActivationBytes),8} GiB");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  reserved  runtime                {GiB(RuntimeReserveBytes),8} GiB");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  peak                             {GiB(PeakBytes),8} GiB  ({(Fits ? "fits" : "DOES NOT FIT")})");
        foreach (var g in Groups)
            sb.AppendLine(CultureInfo.InvariantCulture, $"  {g.Rows}x{g.Cols} x{g.Count} ({g.Names}): batch {g.Batch}, {GiB(g.WorkspaceBytes)} GiB");
        return sb.ToString();
    }

    private string ChildrenText => Children == 1 ? "child" : $"{Children} children";

    private static string GiB(long bytes) => (bytes / (double)(1L << 30)).ToString("F2", CultureInfo.InvariantCulture);
}
