using CycleQD.Tensors;

namespace CycleQD.Onnx.Graph;

/// <summary>One weight the Llama graph takes as an input: its Hugging Face tensor name and shape.</summary>
/// <param name="Name">e.g. "model.layers.0.self_attn.q_proj.weight"; also the graph input's name.</param>
/// <param name="Shape">Row-major dimensions; linear layers are [out_features, in_features] as in PyTorch.</param>
public sealed record LlamaWeightSpec(string Name, long[] Shape);

/// <summary>The weight tensors a Llama-family model of a given config has, in graph-input order.</summary>
public static class LlamaWeightLayout
{
    /// <summary>Name of the token embedding matrix [vocab, hidden].</summary>
    public const string Embedding = "model.embed_tokens.weight";
    /// <summary>Name of the final RMSNorm weight [hidden].</summary>
    public const string FinalNorm = "model.norm.weight";
    /// <summary>Name of the output projection [vocab, hidden] (absent when tied).</summary>
    public const string LmHead = "lm_head.weight";

    /// <summary>Every weight the graph reads; lm_head only when embeddings are not tied.</summary>
    public static IReadOnlyList<LlamaWeightSpec> For(LlamaConfig c)
    {
        long h = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim, ff = c.IntermediateSize;
        var list = new List<LlamaWeightSpec> { new(Embedding, [c.VocabSize, h]) };
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            list.Add(new(p + "input_layernorm.weight", [h]));
            list.Add(new(p + "self_attn.q_proj.weight", [q, h]));
            list.Add(new(p + "self_attn.k_proj.weight", [kv, h]));
            list.Add(new(p + "self_attn.v_proj.weight", [kv, h]));
            list.Add(new(p + "self_attn.o_proj.weight", [h, q]));
            list.Add(new(p + "post_attention_layernorm.weight", [h]));
            list.Add(new(p + "mlp.gate_proj.weight", [ff, h]));
            list.Add(new(p + "mlp.up_proj.weight", [ff, h]));
            list.Add(new(p + "mlp.down_proj.weight", [h, ff]));
        }
        list.Add(new(FinalNorm, [h]));
        if (!c.TieWordEmbeddings) list.Add(new(LmHead, [c.VocabSize, h]));
        return list;
    }
}
