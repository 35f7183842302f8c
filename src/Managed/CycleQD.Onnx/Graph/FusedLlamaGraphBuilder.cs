using CycleQD.Tensors;

namespace CycleQD.Onnx.Graph;

/// <summary>
/// Builds the Llama decoder on ONNX Runtime's contrib operators (domain com.microsoft):
/// GroupQueryAttention over a KV buffer that is both past input and present output (with the rotary
/// embedding inside it when head_dim allows, else RotaryEmbedding), SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization, FusedMatMul
/// and QuickGelu (alpha 1 is SiLU). Every weight stays a named graph input with the same names and
/// PyTorch layouts as <see cref="LlamaGraphBuilder"/>, so one session serves any weight set.
/// </summary>
/// <remarks>
/// Sequences are right-padded: row b holds its real tokens first. Graph inputs: <c>input_ids</c> int64
/// [batch, seq]; <c>position_ids</c> int64 [batch, seq] (rotary position of each token; only when the
/// rotary is not done inside attention, see <see cref="RotaryInAttention(LlamaConfig, FusedAttention)"/>);
/// <c>seqlens_k</c> int32 [batch] (each row's cached plus new real tokens, minus one);
/// <c>total_sequence_length</c> int32 scalar (the largest of those plus one; equal to seq for a prefill);
/// <c>last_token_index</c> int64 [batch, 1] (the position within this run whose logits are wanted; only
/// with <see cref="LlamaGraphOptions.LastPositionLogitsOnly"/>); <c>cos_cache</c>, <c>sin_cache</c> T
/// [max_positions, head_dim/2]; <c>past_key_values.{i}.key|value</c> T [batch, kv_heads, capacity, head_dim];
/// the weights. Outputs: <c>logits</c> float32 [batch, 1 or seq, vocab], with last-position logits
/// <c>next_tokens</c> int64 [batch, 1] (each row's argmax), and <c>present.{i}.key|value</c>, bound to
/// the same buffers as the past inputs so that GroupQueryAttention appends in place. The operators have
/// CPU kernels for float32 and float16 and CUDA kernels for float16 and bfloat16 (GroupQueryAttention
/// has no float32 CUDA kernel).
/// ONNX Runtime's GroupQueryAttention takes a prompt (seq &gt; 1) only with no earlier tokens when the
/// batch has more than one row; decoding steps take one token per row. On the CPU in float32 the graph can
/// use CycleQD's CachedAttention instead (<see cref="FusedAttention"/>), with the same inputs and outputs;
/// that graph also takes each layer's q/k/v and gate/up weights stacked (<see cref="PackedWeights"/>), one
/// product each, with CycleQD's SiluMul in place of QuickGelu and Mul.
/// </remarks>
public static class FusedLlamaGraphBuilder
{
    /// <summary>Domain of ONNX Runtime's contrib operators.</summary>
    public const string ContribDomain = "com.microsoft";

    /// <summary>Input names specific to the fused graph (the rest are shared with <see cref="LlamaGraphBuilder"/>).</summary>
    public const string PositionIds = "position_ids", SeqLensK = "seqlens_k", TotalSequenceLength = "total_sequence_length",
        LastTokenIndex = "last_token_index", CosCache = "cos_cache", SinCache = "sin_cache";

    /// <summary>Builds the fused graph for <paramref name="config"/> with GroupQueryAttention (validate it first with <see cref="LlamaGraphBuilder.Validate"/>).</summary>
    public static OnnxGraph Build(LlamaConfig config, LlamaGraphOptions options) => Build(config, options, FusedAttention.GroupQueryAttention);

    /// <summary>Builds the fused graph for <paramref name="config"/> with the given attention operator (validate the config first with <see cref="LlamaGraphBuilder.Validate"/>).</summary>
    /// <exception cref="ArgumentException"><see cref="FusedAttention.CachedAttention"/> in a type other than float32.</exception>
    public static OnnxGraph Build(LlamaConfig config, LlamaGraphOptions options, FusedAttention attention)
    {
        var t = options.ElementType;
        if (attention == FusedAttention.CachedAttention && t != OnnxElementType.Float)
            throw new ArgumentException($"CachedAttention has a float32 kernel only; this graph is {t}", nameof(attention));
        var g = new OnnxGraph("llama_fused", LlamaGraphBuilder.Opset);
        int nh = config.NumAttentionHeads, kvh = config.NumKeyValueHeads, d = config.HeadDim, v = config.VocabSize;
        float eps = (float)config.RmsNormEps;

        string ids = g.Input(LlamaGraphBuilder.InputIds, OnnxElementType.Int64, "batch", "seq");
        bool inAttention = RotaryInAttention(config, attention);
        string? pos = inAttention ? null : g.Input(PositionIds, OnnxElementType.Int64, "batch", "seq");
        string seqlens = g.Input(SeqLensK, OnnxElementType.Int32, "batch");
        string total = g.Input(TotalSequenceLength, OnnxElementType.Int32);
        string? last = options.LastPositionLogitsOnly ? g.Input(LastTokenIndex, OnnxElementType.Int64, "batch", 1) : null;
        string cos = g.Input(CosCache, t, "max_positions", d / 2);
        string sin = g.Input(SinCache, t, "max_positions", d / 2);
        var past = new (string K, string V)[config.NumHiddenLayers];
        for (int i = 0; i < config.NumHiddenLayers; i++)
            past[i] = (g.Input(LlamaGraphBuilder.PastName(i, false), t, "batch", kvh, "capacity", d),
                       g.Input(LlamaGraphBuilder.PastName(i, true), t, "batch", kvh, "capacity", d));
        var stacks = PackedWeights(config, attention);
        bool packed = stacks.Count > 0;
        foreach (var w in GraphWeights(config, attention))
            g.Input(w.Name, t, w.Shape.Select(x => (OnnxDim)x).ToArray());
        foreach (var w in stacks)
            g.Input(w.Name, t, w.Shape.Select(x => (OnnxDim)x).ToArray());

        string residual = g.Node("Gather", [LlamaWeightLayout.Embedding, ids], ("axis", 0L));
        string normed = g.Node("SimplifiedLayerNormalization", [residual, "model.layers.0.input_layernorm.weight"], ("axis", -1L), ("epsilon", eps));
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            // With CachedAttention one product makes query, key and value side by side (it takes them
            // packed), and one makes gate and up (SiluMul takes them packed): fewer, larger operators.
            string q = Linear(g, normed, packed ? PackedQkv(i) : p + "self_attn.q_proj.weight");
            string k = packed ? "" : Linear(g, normed, p + "self_attn.k_proj.weight");
            string vv = packed ? "" : Linear(g, normed, p + "self_attn.v_proj.weight");
            string attn = $"attn_{i}";
            var present = new[] { attn, LlamaGraphBuilder.PresentName(i, false), LlamaGraphBuilder.PresentName(i, true) };
            var attentionAttributes = new (string Name, object Value)[] { ("num_heads", (long)nh), ("kv_num_heads", (long)kvh), ("scale", (float)(1.0 / Math.Sqrt(d))) };
            if (attention == FusedAttention.CachedAttention)
            {
                // GroupQueryAttention's inputs (q packed with k and v, which are left out), outputs and
                // attributes with its rotary inside (the tables as two trailing inputs); CachedAttention
                // keeps its keys in its own layout inside the buffer (native/ortops/attention.cc).
                g.DomainNode(Runtime.CpuOperators.Domain, "CachedAttention", [q, k, vv, past[i].K, past[i].V, seqlens, total, cos, sin], present, attentionAttributes);
            }
            else if (inAttention)
            {
                // Rotary inside attention: GroupQueryAttention turns q and k by each token's position
                // (its index in a prompt, the cached length when decoding), with no separate operators.
                g.DomainNode(ContribDomain, "GroupQueryAttention", [q, k, vv, past[i].K, past[i].V, seqlens, total, cos, sin], present,
                    [.. attentionAttributes, ("do_rotary", 1L), ("rotary_interleaved", 0L)]);
            }
            else
            {
                g.DomainNode(ContribDomain, "GroupQueryAttention", [Rotary(g, q, pos!, cos, sin), Rotary(g, k, pos!, cos, sin), vv, past[i].K, past[i].V, seqlens, total], present,
                    attentionAttributes);
            }
            (normed, residual) = SkipNorm(g, Linear(g, attn, p + "self_attn.o_proj.weight"), residual, p + "post_attention_layernorm.weight", eps);
            string act;
            if (packed)
            {
                act = g.DomainNode(Runtime.CpuOperators.Domain, "SiluMul", [Linear(g, normed, PackedGateUp(i))]);
            }
            else
            {
                string gate = Linear(g, normed, p + "mlp.gate_proj.weight");
                string up = Linear(g, normed, p + "mlp.up_proj.weight");
                act = g.Node("Mul", [g.DomainNode(ContribDomain, "QuickGelu", [gate], ("alpha", 1.0f)), up]);
            }
            string next = i + 1 < config.NumHiddenLayers ? $"model.layers.{i + 1}.input_layernorm.weight" : LlamaWeightLayout.FinalNorm;
            (normed, residual) = SkipNorm(g, Linear(g, act, p + "mlp.down_proj.weight"), residual, next, eps);
        }
        // Only the wanted row of each sequence goes through the LM head: GatherND with one batch
        // dimension picks hidden[b, last[b]] → [batch, hidden].
        string head = config.TieWordEmbeddings ? LlamaWeightLayout.Embedding : LlamaWeightLayout.LmHead;
        // The last operator writes the output itself (naming it "logits"), with no Identity copying
        // it there: a copy of batch × vocab floats every step.
        string logits = LlamaGraphBuilder.Logits;
        bool cast = t != OnnxElementType.Float;
        if (last is not null)
        {
            string rows = g.Node("GatherND", [normed, last], ("batch_dims", 1L));
            string[] unsqueezed = cast ? [$"{logits}_{t}"] : [logits];
            g.Node("Unsqueeze", [Linear(g, rows, head), g.ConstInt64([1])], unsqueezed);
            if (cast) g.Node("Cast", unsqueezed, [logits], ("to", (long)OnnxElementType.Float));
        }
        else if (cast) g.Node("Cast", [Linear(g, normed, head)], [logits], ("to", (long)OnnxElementType.Float));
        else logits = Linear(g, normed, head);
        g.Output(logits, LlamaGraphBuilder.Logits, OnnxElementType.Float, "batch", options.LastPositionLogitsOnly ? 1 : "seq", v);
        // Each row's greedy next token, picked where the logits are computed (on the GPU with CUDA).
        if (options.LastPositionLogitsOnly)
            g.Output(g.Node("ArgMax", [logits], ("axis", -1L), ("keepdims", 0L), ("select_last_index", 0L)), LlamaGraphBuilder.NextTokens, OnnxElementType.Int64, "batch", 1);
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            g.Output(LlamaGraphBuilder.PresentName(i, false), LlamaGraphBuilder.PresentName(i, false), t, "batch", kvh, "capacity", d);
            g.Output(LlamaGraphBuilder.PresentName(i, true), LlamaGraphBuilder.PresentName(i, true), t, "batch", kvh, "capacity", d);
        }
        return g;
    }

    /// <summary>
    /// Whether the graph of <paramref name="config"/> lets GroupQueryAttention apply the rotary embedding
    /// itself (as onnxruntime-genai's model builder does): its rotary needs head_dim a multiple of 16.
    /// Otherwise RotaryEmbedding operators turn q and k before attention, and the graph takes
    /// <c>position_ids</c>.
    /// </summary>
    public static bool RotaryInAttention(LlamaConfig config) => RotaryInAttention(config, FusedAttention.GroupQueryAttention);

    /// <summary>
    /// Whether the graph of <paramref name="config"/> with <paramref name="attention"/> applies the rotary
    /// embedding inside attention: GroupQueryAttention at head_dim a multiple of 16; CachedAttention always.
    /// </summary>
    public static bool RotaryInAttention(LlamaConfig config, FusedAttention attention) =>
        attention == FusedAttention.CachedAttention || config.HeadDim % 16 == 0;

    /// <summary>The most values the stacked weights of <see cref="PackedWeights"/> may hold in all (64 MiB of float32); a larger model's graph takes its projections one by one.</summary>
    internal const long MaxPackedValues = 1L << 24;

    /// <summary>Name of layer <paramref name="layer"/>'s q, k and v projections stacked [q_out + 2·kv_out, hidden] (graphs with CachedAttention).</summary>
    internal static string PackedQkv(int layer) => $"model.layers.{layer}.self_attn.qkv_proj.weight";

    /// <summary>Name of layer <paramref name="layer"/>'s gate and up projections stacked [2·intermediate, hidden] (graphs with CachedAttention).</summary>
    internal static string PackedGateUp(int layer) => $"model.layers.{layer}.mlp.gate_up_proj.weight";

    /// <summary>
    /// The model's weights the graph with <paramref name="attention"/> takes as inputs of their own
    /// (<see cref="LlamaWeightLayout.For"/>, less those it takes packed, <see cref="PackedWeights"/>).
    /// </summary>
    internal static IReadOnlyList<LlamaWeightSpec> GraphWeights(LlamaConfig config, FusedAttention attention)
    {
        var packedSources = PackedWeights(config, attention).SelectMany(w => w.Sources).ToHashSet(StringComparer.Ordinal);
        return LlamaWeightLayout.For(config).Where(w => !packedSources.Contains(w.Name)).ToArray();
    }

    /// <summary>
    /// Graph inputs made of several model weights stacked along their first axis (their data one after
    /// the other): with CachedAttention (the CPU float32 graph), each layer's q, k and v projections and
    /// its gate and up projections, so that one matrix product makes each group. None with GroupQueryAttention.
    /// </summary>
    internal static IReadOnlyList<PackedWeightSpec> PackedWeights(LlamaConfig config, FusedAttention attention)
    {
        if (attention != FusedAttention.CachedAttention) return [];
        long h = config.HiddenSize, q = (long)config.NumAttentionHeads * config.HeadDim, kv = (long)config.NumKeyValueHeads * config.HeadDim, ff = config.IntermediateSize;
        // A batch decoder stacks them with a copy: worth it where the operators are small enough for
        // their count to matter, not for a model whose copy would take a second and gigabytes.
        if ((q + 2 * kv + 2 * ff) * h * config.NumHiddenLayers > MaxPackedValues) return [];
        var list = new List<PackedWeightSpec>();
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            list.Add(new(PackedQkv(i), [q + 2 * kv, h], [p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"]));
            list.Add(new(PackedGateUp(i), [2 * ff, h], [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"]));
        }
        return list;
    }

    /// <summary>x [..., in] · Wᵀ with W [out, in] as stored by PyTorch; FusedMatMul transposes B inside the product, no copy.</summary>
    private static string Linear(OnnxGraph g, string x, string weight) =>
        g.DomainNode(ContribDomain, "FusedMatMul", [x, weight], ("transB", 1L));

    /// <summary>Rotary embedding of [batch, seq, heads·head_dim] in Hugging Face's rotate_half layout (not interleaved).</summary>
    private static string Rotary(OnnxGraph g, string x, string pos, string cos, string sin) =>
        g.DomainNode(ContribDomain, "RotaryEmbedding", [x, pos, cos, sin], ("interleaved", 0L));

    /// <summary>residual + x, and RMSNorm of that sum: returns (normalized, new residual).</summary>
    private static (string Normed, string Residual) SkipNorm(OnnxGraph g, string x, string residual, string weight, float eps)
    {
        // Each norm weight is used once, so its name makes the outputs' names unique.
        string normed = $"normed_{weight}", sum = $"residual_{weight}";
        // Outputs: normalized, mean and inv_std_var (unused, left unnamed), input + skip.
        g.DomainNode(ContribDomain, "SkipSimplifiedLayerNormalization", [x, residual, weight], [normed, "", "", sum], ("epsilon", eps));
        return (normed, sum);
    }
}

/// <summary>A graph input made of model weights stacked along their first axis, in order.</summary>
/// <param name="Name">The graph input's name.</param>
/// <param name="Shape">Its shape: the sources' first dimensions summed, the rest shared.</param>
/// <param name="Sources">The model weights it holds (<see cref="LlamaWeightLayout"/> names), in order.</param>
internal sealed record PackedWeightSpec(string Name, long[] Shape, string[] Sources);
