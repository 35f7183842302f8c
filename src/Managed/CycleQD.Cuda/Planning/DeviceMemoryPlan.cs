using System.Globalization;
using System.Text;
using CycleQD.Cuda.Svd;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Planning;

/// <summary>All 2-D weights of one shape: they are mutated together as one batched SVD.</summary>
/// <param name="Rows">Rows of the row-major weight (out features).</param>
/// <param name="Cols">Columns (in features).</param>
/// <param name="Count">Matrices of this shape in the model.</param>
/// <param name="Names">Which weights, e.g. "q_proj, o_proj".</param>
/// <param name="Batch">Matrices per batched SVD chosen by the plan.</param>
/// <param name="WorkspaceBytes">Device bytes the mutation of one batch needs.</param>
public sealed record ShapeGroup(int Rows, int Cols, int Count, string Names, int Batch, long WorkspaceBytes);

/// <summary>Knobs of the plan.</summary>
/// <param name="Rank">Rank of the truncated SVD (k).</param>
/// <param name="Oversampling">Randomized-SVD oversampling (p).</param>
/// <param name="EvaluationReserveBytes">Left free for the evaluator (ONNX Runtime activations and KV cache).</param>
/// <param name="RuntimeReserveBytes">CUDA context, cuBLAS/cuSOLVER and JIT-compiled modules.</param>
public sealed record DeviceMemoryPlanOptions(
    int Rank = 256,
    int Oversampling = 16,
    long EvaluationReserveBytes = 6L << 30,
    long RuntimeReserveBytes = 1L << 30);

/// <summary>
/// Where the bytes go when one GPU merges and mutates a Llama-family model:
/// <list type="bullet">
/// <item>resident for the whole run: the base weights and the child being built (storage type);</item>
/// <item>streamed: the two parents, one tensor at a time from pinned host memory, double-buffered
/// (2 parents × 2 buffers × the largest tensor) — the merge reads them and writes the child;</item>
/// <item>per mutation batch: τ = child − base in float32 for the batch, the randomized SVD's
/// sketches and factors, the scaled U and solver scratch; the batch size per shape is the largest
/// that fits next to everything else;</item>
/// <item>reserves: the CUDA runtime libraries and the evaluator.</item>
/// </list>
/// Peak = resident + staging + the largest batch workspace + reserves.
/// </summary>
public sealed class DeviceMemoryPlan
{
    private DeviceMemoryPlan() { }

    /// <summary>Storage type of the weights.</summary>
    public DType Storage { get; private init; }
    /// <summary>Bytes of one full weight set (config's parameter count × element size).</summary>
    public long WeightSetBytes { get; private init; }
    /// <summary>Base + child, resident.</summary>
    public long ResidentBytes { get; private init; }
    /// <summary>Parent staging: 2 parents × 2 buffers × the largest tensor.</summary>
    public long StagingBytes { get; private init; }
    /// <summary>The largest per-batch mutation workspace over the shape groups.</summary>
    public long PeakWorkspaceBytes { get; private init; }
    /// <summary>Runtime + evaluation reserves.</summary>
    public long ReserveBytes { get; private init; }
    /// <summary>Peak device bytes of the whole plan.</summary>
    public long PeakBytes => ResidentBytes + StagingBytes + PeakWorkspaceBytes + ReserveBytes;
    /// <summary>Device bytes the plan was made for.</summary>
    public long DeviceBytes { get; private init; }
    /// <summary>The 2-D weight shapes, with the batch chosen for each.</summary>
    public IReadOnlyList<ShapeGroup> Groups { get; private init; } = [];
    /// <summary>True when the peak fits the device.</summary>
    public bool Fits => PeakBytes <= DeviceBytes;

    /// <summary>
    /// Plans a model of <paramref name="config"/> stored as <paramref name="storage"/> on a device with
    /// <paramref name="deviceBytes"/> of memory (use the driver's free memory at start-up).
    /// </summary>
    /// <exception cref="NotSupportedException">storage other than F32, F16, BF16.</exception>
    public static DeviceMemoryPlan Create(LlamaConfig config, DType storage, long deviceBytes, DeviceMemoryPlanOptions? options = null)
    {
        options ??= new DeviceMemoryPlanOptions();
        if (storage is not (DType.F32 or DType.F16 or DType.BF16))
            throw new NotSupportedException($"weights stored as {DTypes.Name(storage)}; the plan covers F32, F16, BF16");
        int es = DTypes.SizeOf(storage);
        long weightSet = config.ParameterCount * es;
        var shapes = Shapes(config);
        long largestTensor = shapes.Max(s => (long)s.Rows * s.Cols) * es;
        long resident = 2 * weightSet;
        long staging = 2L * 2 * largestTensor;
        long reserve = options.EvaluationReserveBytes + options.RuntimeReserveBytes;
        long available = deviceBytes - resident - staging - reserve;

        var groups = FitBatches(shapes, available, options);
        return new DeviceMemoryPlan
        {
            Storage = storage,
            WeightSetBytes = weightSet,
            ResidentBytes = resident,
            StagingBytes = staging,
            PeakWorkspaceBytes = groups.Max(g => g.WorkspaceBytes),
            ReserveBytes = reserve,
            DeviceBytes = deviceBytes,
            Groups = groups,
        };
    }

    /// <summary>
    /// Per shape, the largest mutation batch (at most the shape's count, at least 1) whose workspace
    /// fits in <paramref name="available"/> bytes, with that workspace.
    /// </summary>
    internal static List<ShapeGroup> FitBatches(List<(int Rows, int Cols, int Count, string Names)> shapes, long available, DeviceMemoryPlanOptions options)
    {
        var groups = new List<ShapeGroup>(shapes.Count);
        foreach (var (rows, cols, count, names) in shapes)
        {
            int batch = count;
            while (batch > 1 && BatchWorkspaceBytes(rows, cols, batch, options) > available) batch--;
            groups.Add(new ShapeGroup(rows, cols, count, names, batch, BatchWorkspaceBytes(rows, cols, batch, options)));
        }
        return groups;
    }

    /// <summary>
    /// Device bytes to mutate <paramref name="batch"/> row-major rows×cols weights at once: τ in
    /// float32, the randomized SVD's workspace and result, U·diag(δ), and solver scratch (an upper
    /// bound of cuSOLVER's geqrf/orgqr/gesvdj buffers: 2·max(m,n)·l floats).
    /// </summary>
    public static long BatchWorkspaceBytes(int rows, int cols, int batch, DeviceMemoryPlanOptions options)
    {
        // The SVD runs on the column-major view of the row-major weight: m = cols, n = rows.
        long m = cols, n = rows;
        int k = (int)Math.Min(options.Rank, Math.Min(m, n));
        int l = (int)Math.Min(k + options.Oversampling, Math.Min(m, n));
        long floats = batch * m * n                                       // τ
            + RandomizedSvd.WorkspaceFloats(batch, (int)m, (int)n, l)   // sketches, QR, small SVD, result
            + batch * (m * k + k)                                      // U diag(δ), δ
            + 2 * Math.Max(m, n) * l;                                  // solver scratch
        return floats * sizeof(float);
    }

    /// <summary>Throws when the plan does not fit, naming the numbers.</summary>
    /// <exception cref="DeviceMemoryException">the peak exceeds the device memory.</exception>
    public void EnsureFits(string deviceName)
    {
        if (Fits) return;
        throw new DeviceMemoryException(
            $"{deviceName} has {GiB(DeviceBytes)} GiB free but merging and mutating this model needs {GiB(PeakBytes)} GiB at peak " +
            $"(base + child {GiB(ResidentBytes)} GiB, parent staging {GiB(StagingBytes)} GiB, mutation workspace {GiB(PeakWorkspaceBytes)} GiB at batch 1, " +
            $"reserves {GiB(ReserveBytes)} GiB); use a larger card or the CPU backend");
    }

    /// <summary>A human-readable table of the plan (GiB = 2^30 bytes).</summary>
    public string Describe()
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"device memory plan ({DTypes.Name(Storage)} weights, {GiB(DeviceBytes)} GiB on the device):");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  resident  base + child           {GiB(ResidentBytes),8} GiB  ({GiB(WeightSetBytes)} GiB each)");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  streamed  parent staging         {GiB(StagingBytes),8} GiB  (2 parents x 2 buffers x largest tensor)");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  mutation  largest batch          {GiB(PeakWorkspaceBytes),8} GiB");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  reserved  runtime + evaluator    {GiB(ReserveBytes),8} GiB");
        sb.AppendLine(CultureInfo.InvariantCulture, $"  peak                             {GiB(PeakBytes),8} GiB  ({(Fits ? "fits" : "DOES NOT FIT")})");
        foreach (var g in Groups)
            sb.AppendLine(CultureInfo.InvariantCulture, $"  {g.Rows}x{g.Cols} x{g.Count} ({g.Names}): batch {g.Batch}, {GiB(g.WorkspaceBytes)} GiB");
        return sb.ToString();
    }

    private static string GiB(long bytes) => (bytes / (double)(1L << 30)).ToString("F2", CultureInfo.InvariantCulture);

    /// <summary>The 2-D weight shapes of a Llama-family model with their counts, in a stable order.</summary>
    internal static List<(int Rows, int Cols, int Count, string Names)> Shapes(LlamaConfig c)
    {
        int h = c.HiddenSize, q = c.NumAttentionHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim, L = c.NumHiddenLayers;
        var list = new List<(int Rows, int Cols, string Name, int Count)>
        {
            (q, h, "q_proj", L), (kv, h, "k_proj", L), (kv, h, "v_proj", L), (h, q, "o_proj", L),
            (c.IntermediateSize, h, "gate_proj", L), (c.IntermediateSize, h, "up_proj", L), (h, c.IntermediateSize, "down_proj", L),
            (c.VocabSize, h, "embed_tokens", 1),
        };
        if (!c.TieWordEmbeddings) list.Add((c.VocabSize, h, "lm_head", 1));
        return list.GroupBy(t => (t.Rows, t.Cols))
            .Select(g => (g.Key.Rows, g.Key.Cols, g.Sum(t => t.Count), string.Join(", ", g.Select(t => t.Name))))
            .ToList();
    }
}
