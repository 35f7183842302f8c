namespace CycleQD.Onnx.Graph;

/// <summary>Which ONNX graph runs a Llama model.</summary>
public enum LlamaGraphKind
{
    /// <summary>Standard opset-17 operators only (<see cref="LlamaGraphBuilder"/>): runs on any provider; the reference the fused graph is tested against.</summary>
    Plain,
    /// <summary>ONNX Runtime's contrib operators with an in-place KV buffer (<see cref="FusedLlamaGraphBuilder"/>): fewer operators and no cache copies per step; CPU provider (float32, float16) and CUDA provider (float16, bfloat16).</summary>
    Fused,
}

/// <summary>Which operator computes attention in the fused graph (<see cref="FusedLlamaGraphBuilder"/>).</summary>
public enum FusedAttention
{
    /// <summary>ONNX Runtime's GroupQueryAttention (domain com.microsoft): CPU float32/float16, CUDA float16/bfloat16; turns q and k itself when head_dim is a multiple of 16.</summary>
    GroupQueryAttention,
    /// <summary>CycleQD's CachedAttention (domain ai.cycleqd, <see cref="Runtime.CpuOperators"/>): CPU float32 only, same inputs and outputs without the rotary; faster than GroupQueryAttention at small head_dim and large batches (docs/perf.md).</summary>
    CachedAttention,
}
