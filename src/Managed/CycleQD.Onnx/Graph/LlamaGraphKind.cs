namespace CycleQD.Onnx.Graph;

/// <summary>Which ONNX graph runs a Llama model.</summary>
public enum LlamaGraphKind
{
    /// <summary>Standard opset-17 operators only (<see cref="LlamaGraphBuilder"/>): runs on any provider; the reference the fused graph is tested against.</summary>
    Plain,
    /// <summary>ONNX Runtime's contrib operators with an in-place KV buffer (<see cref="FusedLlamaGraphBuilder"/>): fewer operators and no cache copies per step; CPU provider (float32, float16) and CUDA provider (float16, bfloat16).</summary>
    Fused,
}
