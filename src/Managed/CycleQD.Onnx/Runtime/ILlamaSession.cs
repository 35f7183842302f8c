using CycleQD.Onnx.Graph;
using CycleQD.Tensors;

namespace CycleQD.Onnx.Runtime;

/// <summary>
/// One ONNX Runtime session of a Llama architecture whose weights are graph inputs: any
/// <see cref="LlamaWeights"/> of the config can be bound to it without rebuilding anything.
/// </summary>
public interface ILlamaSession : IDisposable
{
    /// <summary>The architecture.</summary>
    LlamaConfig Config { get; }

    /// <summary>How the graph was built.</summary>
    LlamaGraphOptions Options { get; }

    /// <summary>Which graph the session runs.</summary>
    LlamaGraphKind Graph { get; }

    /// <summary>Execution provider in use.</summary>
    InferenceDevice Device { get; }

    /// <summary>The GPU (CUDA ordinal) the CUDA provider runs on; 0 on the CPU provider.</summary>
    int CudaDevice => 0;

    /// <summary>Starts decoding <paramref name="batch"/> sequences of at most <paramref name="capacity"/> tokens each (prompt and generated) with <paramref name="weights"/> (not owned).</summary>
    IBatchDecoder StartBatch(LlamaWeights weights, int batch, int capacity);

    /// <summary>Builds the graph of kind <paramref name="graph"/> for <paramref name="config"/> and opens a session on <paramref name="device"/>.</summary>
    /// <exception cref="ArgumentException">an element type the graph's kernels lack on <paramref name="device"/> (BFloat16 on the CPU; Float for the fused graph on CUDA).</exception>
    static ILlamaSession Open(LlamaGraphKind graph, LlamaConfig config, LlamaGraphOptions options, InferenceDevice device = InferenceDevice.Cpu,
        string configPath = "config.json", int intraOpThreads = 0, int cudaDevice = 0) => graph switch
        {
            LlamaGraphKind.Plain => new LlamaSession(config, options, device, configPath, intraOpThreads, cudaDevice),
            LlamaGraphKind.Fused => new FusedLlamaSession(config, options, device, configPath, intraOpThreads, cudaDevice),
            _ => throw new ArgumentOutOfRangeException(nameof(graph)),
        };

    /// <summary>
    /// The graph used when none is named, for a float32 graph: the fused graph on the CPU (measured
    /// faster, docs/perf.md) when <paramref name="config"/> meets its requirements (head_dim a multiple
    /// of 8), the plain graph otherwise (CUDA's GroupQueryAttention has no float32 kernel).
    /// </summary>
    static LlamaGraphKind DefaultGraph(InferenceDevice device, LlamaConfig config) => DefaultGraph(device, config, OnnxElementType.Float);

    /// <summary>
    /// The graph used when none is named: the fused graph wherever the provider has its kernels in
    /// <paramref name="elementType"/> (CPU: float32 and float16; CUDA: float16 and bfloat16) and
    /// <paramref name="config"/> meets its requirements (head_dim a multiple of 8); the plain graph
    /// otherwise. The fused graph keeps one KV buffer that attention appends to in place, where the
    /// plain graph copies the whole cache into a new one every step (docs/cuda.md).
    /// </summary>
    static LlamaGraphKind DefaultGraph(InferenceDevice device, LlamaConfig config, OnnxElementType elementType) =>
        FusedLlamaSession.Supports(config) && FusedLlamaSession.SupportsElementType(device, elementType) ? LlamaGraphKind.Fused : LlamaGraphKind.Plain;
}

/// <summary>
/// The decoding state of one batch: its KV cache, each sequence's length and the bound inputs.
/// Logit arrays returned are [rows, vocab] (row-major, the logits after each row's last token) and
/// stay valid until the next call.
/// </summary>
public interface IBatchDecoder : IDisposable
{
    /// <summary>Sequences currently in the batch.</summary>
    int Rows { get; }

    /// <summary>Runs the prompts (one per row, at least one token each; once, first).</summary>
    float[] Prefill(IReadOnlyList<int[]> prompts);

    /// <summary>Appends one token per row and returns the next logits.</summary>
    float[] Decode(ReadOnlySpan<int> tokens);

    /// <summary>Keeps only the rows at <paramref name="rows"/> (indices into the current rows, in the new order).</summary>
    void KeepRows(IReadOnlyList<int> rows);

    /// <summary>Whether <see cref="PrefillGreedy"/> and <see cref="DecodeGreedy"/> pick the greedy tokens where the logits are computed.</summary>
    bool PicksGreedyTokens => false;

    /// <summary>As <see cref="Prefill"/>, returning each row's greedy next token instead of its logits.</summary>
    /// <exception cref="NotSupportedException">the decoder does not pick tokens (<see cref="PicksGreedyTokens"/> is false).</exception>
    int[] PrefillGreedy(IReadOnlyList<int[]> prompts) => throw new NotSupportedException("this decoder returns logits only");

    /// <summary>As <see cref="Decode"/>, returning each row's greedy next token instead of its logits.</summary>
    /// <exception cref="NotSupportedException">the decoder does not pick tokens (<see cref="PicksGreedyTokens"/> is false).</exception>
    int[] DecodeGreedy(ReadOnlySpan<int> tokens) => throw new NotSupportedException("this decoder returns logits only");
}
