using CycleQD.Tensors;

namespace CycleQD.Onnx.Graph;

/// <summary>How a Llama graph is built.</summary>
/// <param name="ElementType">Type of weights and activations: Float, Float16 (CUDA; on CPU only through ONNX Runtime's inserted casts) or BFloat16 (CUDA provider only).</param>
/// <param name="LastPositionLogitsOnly">Output logits for the last position only ([batch, 1, vocab]); generation needs nothing more, and a long prompt's [batch, seq, vocab] would be large.</param>
public sealed record LlamaGraphOptions(OnnxElementType ElementType = OnnxElementType.Float, bool LastPositionLogitsOnly = false);

/// <summary>
/// Builds the ONNX graph of a Llama-family decoder (LlamaForCausalLM) from its config, with every
/// weight a named graph input (see <see cref="LlamaWeightLayout"/>), so one session serves any
/// weights of that architecture.
/// </summary>
/// <remarks>
/// Graph inputs: <c>input_ids</c> int64 [batch, seq]; <c>rope_cos</c>, <c>rope_sin</c> T [batch, seq, head_dim]
/// (rotary tables for each token's position, Hugging Face rotate_half layout, see <see cref="RotaryTables"/>);
/// <c>attention_bias</c> T [batch, 1, seq, past+seq] (0 where attention is allowed, a large negative
/// number elsewhere: causal and padding masks together); <c>past_key_values.{i}.key</c>
/// T [batch, kv_heads, head_dim, past] (keys transposed) and <c>past_key_values.{i}.value</c>
/// T [batch, kv_heads, past, head_dim]; then the weights. Outputs: <c>logits</c> float32
/// [batch, seq or 1, vocab] and <c>present.{i}.key|value</c> in the layouts of the past inputs with
/// past+seq positions.
/// Linear layers are Gemm with transB over the PyTorch [out, in] layout, so weights bind unchanged.
/// </remarks>
public static class LlamaGraphBuilder
{
    /// <summary>Opset of the standard domain the graph uses.</summary>
    public const int Opset = 17;

    /// <summary>Input names.</summary>
    public const string InputIds = "input_ids", RopeCos = "rope_cos", RopeSin = "rope_sin", AttentionBias = "attention_bias", Logits = "logits";

    /// <summary>
    /// Output of a last-position-only graph: the greedy next token of each sequence (int64 [batch, 1], the
    /// first index of the largest logit, as a host argmax picks), so a greedy decoder can leave the
    /// logits where they were computed and fetch a few bytes per step.
    /// </summary>
    public const string NextTokens = "next_tokens";

    /// <summary>Name of layer <paramref name="layer"/>'s past key (<paramref name="value"/> false) or value cache input.</summary>
    public static string PastName(int layer, bool value) => $"past_key_values.{layer}.{(value ? "value" : "key")}";

    /// <summary>Name of layer <paramref name="layer"/>'s present key or value output.</summary>
    public static string PresentName(int layer, bool value) => $"present.{layer}.{(value ? "value" : "key")}";

    /// <summary>Model types the builder accepts.</summary>
    public static readonly IReadOnlySet<string> SupportedModelTypes = LlamaConfig.SupportedModelTypes;

    /// <summary>Rejects configs the graph cannot represent, naming the field at fault.</summary>
    /// <param name="config">Parsed config.json.</param>
    /// <param name="configPath">Path used in the error message.</param>
    /// <exception cref="TensorFormatException">unsupported model_type, activation, rope scaling or odd head_dim.</exception>
    public static void Validate(LlamaConfig config, string configPath)
    {
        if (!SupportedModelTypes.Contains(config.ModelType))
            throw new TensorFormatException(configPath, null, $"model_type \"{config.ModelType}\" is not supported (supported: {string.Join(", ", SupportedModelTypes)})");
        if (config.HiddenAct != "silu")
            throw new TensorFormatException(configPath, null, $"hidden_act \"{config.HiddenAct}\" is not supported (only silu)");
        if (config.HeadDim % 2 != 0)
            throw new TensorFormatException(configPath, null, $"head_dim {config.HeadDim} must be even for rotary embeddings");
        RotaryTables.ValidateScaling(config, configPath);
    }

    /// <summary>Builds the graph for <paramref name="config"/>.</summary>
    public static OnnxGraph Build(LlamaConfig config, LlamaGraphOptions options)
    {
        var g = new OnnxGraph("llama", Opset);
        var t = options.ElementType;
        int h = config.HiddenSize, nh = config.NumAttentionHeads, kvh = config.NumKeyValueHeads, d = config.HeadDim, rep = nh / kvh;
        int v = config.VocabSize;

        string ids = g.Input(InputIds, OnnxElementType.Int64, "batch", "seq");
        string cos = g.Input(RopeCos, t, "batch", "seq", d);
        string sin = g.Input(RopeSin, t, "batch", "seq", d);
        string bias = g.Input(AttentionBias, t, "batch", 1, "seq", "total");
        var past = new (string K, string V)[config.NumHiddenLayers];
        for (int i = 0; i < config.NumHiddenLayers; i++)
            past[i] = (g.Input(PastName(i, false), t, "batch", kvh, d, "past"), g.Input(PastName(i, true), t, "batch", kvh, "past", d));
        foreach (var w in LlamaWeightLayout.For(config))
            g.Input(w.Name, t, w.Shape.Select(x => (OnnxDim)x).ToArray());

        // [batch, seq] as a 1-D int64 tensor, reused to restore 3-D/4-D shapes after 2-D Gemms.
        string bs = g.Node("Shape", [ids]);
        string shapeBsH = g.Node("Concat", [bs, g.ConstInt64([h])], ("axis", 0L));
        string shapeBsHeads = g.Node("Concat", [bs, g.ConstInt64([nh, d])], ("axis", 0L));
        string shapeBsKv = g.Node("Concat", [bs, g.ConstInt64([kvh, d])], ("axis", 0L));
        string rows = g.ConstInt64([-1, h]);
        string cos4 = g.Node("Unsqueeze", [cos, g.ConstInt64([1])]);
        string sin4 = g.Node("Unsqueeze", [sin, g.ConstInt64([1])]);
        string bias5 = g.Node("Unsqueeze", [bias, g.ConstInt64([1])]);
        string scale = g.ConstScalar(1.0 / Math.Sqrt(d), t);

        string x = g.Node("Gather", [LlamaWeightLayout.Embedding, ids], ("axis", 0L));
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            string hn = g.Node("Reshape", [RmsNorm(g, x, p + "input_layernorm.weight", config.RmsNormEps, t), rows]);
            string q = g.Node("Transpose", [g.Node("Reshape", [Linear(g, hn, p + "self_attn.q_proj.weight"), shapeBsHeads])], ("perm", new long[] { 0, 2, 1, 3 }));
            string k = g.Node("Transpose", [g.Node("Reshape", [Linear(g, hn, p + "self_attn.k_proj.weight"), shapeBsKv])], ("perm", new long[] { 0, 2, 1, 3 }));
            string vv = g.Node("Transpose", [g.Node("Reshape", [Linear(g, hn, p + "self_attn.v_proj.weight"), shapeBsKv])], ("perm", new long[] { 0, 2, 1, 3 }));
            q = Rotate(g, q, cos4, sin4, d);
            k = Rotate(g, k, cos4, sin4, d);
            string presentK = PresentName(i, false), presentV = PresentName(i, true);
            // Keys are cached transposed, [b, kvh, d, t], so scores need no per-step transpose of the whole cache.
            g.Node("Concat", [past[i].K, g.Node("Transpose", [k], ("perm", new long[] { 0, 1, 3, 2 }))], [presentK], ("axis", 3L));
            g.Node("Concat", [past[i].V, vv], [presentV], ("axis", 2L));
            // Grouped-query attention without copying K/V per query head: query head n uses KV head
            // n / rep (Hugging Face repeat_kv order), so view queries as [b, kvh, rep, s, d] and let
            // MatMul broadcast K/V [b, kvh, 1, t, d] over the rep axis.
            string q5 = g.Node("Reshape", [q, g.ConstInt64([0, kvh, rep, -1, d])]);
            string k5t = g.Node("Unsqueeze", [presentK, g.ConstInt64([2])]);
            string v5 = g.Node("Unsqueeze", [presentV, g.ConstInt64([2])]);
            string scores = g.Node("Add", [g.Node("Mul", [g.Node("MatMul", [q5, k5t]), scale]), bias5]);
            string probs = g.Node("Softmax", [scores], ("axis", -1L));
            string ctx = g.Node("Reshape", [g.Node("MatMul", [probs, v5]), g.ConstInt64([0, nh, -1, d])]);
            ctx = g.Node("Reshape", [g.Node("Transpose", [ctx], ("perm", new long[] { 0, 2, 1, 3 })), g.ConstInt64([-1, (long)nh * d])]);
            x = g.Node("Add", [x, g.Node("Reshape", [Linear(g, ctx, p + "self_attn.o_proj.weight"), shapeBsH])]);

            string hm = g.Node("Reshape", [RmsNorm(g, x, p + "post_attention_layernorm.weight", config.RmsNormEps, t), rows]);
            string gate = Linear(g, hm, p + "mlp.gate_proj.weight");
            string up = Linear(g, hm, p + "mlp.up_proj.weight");
            string act = g.Node("Mul", [g.Node("Mul", [gate, g.Node("Sigmoid", [gate])]), up]);
            x = g.Node("Add", [x, g.Node("Reshape", [Linear(g, act, p + "mlp.down_proj.weight"), shapeBsH])]);
        }
        string final = RmsNorm(g, x, LlamaWeightLayout.FinalNorm, config.RmsNormEps, t);
        if (options.LastPositionLogitsOnly)
            final = g.Node("Slice", [final, g.ConstInt64([-1]), g.ConstInt64([long.MaxValue]), g.ConstInt64([1])]);
        string head = config.TieWordEmbeddings ? LlamaWeightLayout.Embedding : LlamaWeightLayout.LmHead;
        string logits2 = Linear(g, g.Node("Reshape", [final, rows]), head);
        if (t != OnnxElementType.Float) logits2 = g.Node("Cast", [logits2], ("to", (long)OnnxElementType.Float));
        string batchOnly = g.Node("Slice", [bs, g.ConstInt64([0]), g.ConstInt64([1]), g.ConstInt64([0])]);
        string logits = g.Node("Reshape", [logits2, g.Node("Concat", [batchOnly, g.ConstInt64([-1, v])], ("axis", 0L))]);
        g.Output(logits, Logits, OnnxElementType.Float, "batch", options.LastPositionLogitsOnly ? 1 : "seq", v);
        if (options.LastPositionLogitsOnly)
            g.Output(g.Node("ArgMax", [logits], ("axis", -1L), ("keepdims", 0L), ("select_last_index", 0L)), NextTokens, OnnxElementType.Int64, "batch", 1);
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            g.Output(PresentName(i, false), PresentName(i, false), t, "batch", kvh, d, "total");
            g.Output(PresentName(i, true), PresentName(i, true), t, "batch", kvh, "total", d);
        }
        return g;
    }

    /// <summary>x [rows, in] · Wᵀ with W [out, in] as stored by PyTorch.</summary>
    private static string Linear(OnnxGraph g, string x, string weight) => g.Node("Gemm", [x, weight], ("transB", 1L));

    /// <summary>RMSNorm over the last axis; computed in float32 for half-precision graphs, as Hugging Face does.</summary>
    private static string RmsNorm(OnnxGraph g, string x, string weight, double eps, OnnxElementType t)
    {
        string xf = t == OnnxElementType.Float ? x : g.Node("Cast", [x], ("to", (long)OnnxElementType.Float));
        string meanSquare = g.Node("ReduceMean", [g.Node("Mul", [xf, xf])], ("axes", new long[] { -1 }), ("keepdims", 1L));
        string inv = g.Node("Reciprocal", [g.Node("Sqrt", [g.Node("Add", [meanSquare, g.ConstScalar(eps, OnnxElementType.Float)])])]);
        string normed = g.Node("Mul", [xf, inv]);
        if (t != OnnxElementType.Float) normed = g.Node("Cast", [normed], ("to", (long)t));
        return g.Node("Mul", [normed, weight]);
    }

    /// <summary>x·cos + rotate_half(x)·sin, with rotate_half(x) = concat(−x[d/2:], x[:d/2]) on the last axis.</summary>
    private static string Rotate(OnnxGraph g, string x, string cos, string sin, int d)
    {
        string axis = g.ConstInt64([3]);
        string lo = g.Node("Slice", [x, g.ConstInt64([0]), g.ConstInt64([d / 2]), axis]);
        string hi = g.Node("Slice", [x, g.ConstInt64([d / 2]), g.ConstInt64([d]), axis]);
        string rotated = g.Node("Concat", [g.Node("Neg", [hi]), lo], ("axis", 3L));
        return g.Node("Add", [g.Node("Mul", [x, cos]), g.Node("Mul", [rotated, sin])]);
    }
}
