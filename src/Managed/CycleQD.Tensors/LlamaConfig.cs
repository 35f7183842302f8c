using System.Text.Json;

namespace CycleQD.Tensors;

/// <summary>Llama-3 style RoPE frequency scaling ("rope_scaling" in config.json).</summary>
/// <param name="Type">rope_type (or the older "type"), e.g. "llama3", "linear", "dynamic".</param>
/// <param name="Factor">Scaling factor.</param>
/// <param name="LowFreqFactor">llama3: low_freq_factor (null when absent).</param>
/// <param name="HighFreqFactor">llama3: high_freq_factor (null when absent).</param>
/// <param name="OriginalMaxPositionEmbeddings">llama3: original_max_position_embeddings (null when absent).</param>
public sealed record RopeScaling(string Type, double Factor, double? LowFreqFactor, double? HighFreqFactor, int? OriginalMaxPositionEmbeddings);

/// <summary>
/// The config.json fields of a Llama-family model (LlamaForCausalLM and compatible) that the
/// engine uses, with Hugging Face's defaults where a field may be omitted.
/// </summary>
public sealed record LlamaConfig
{
    /// <summary>model_type, e.g. "llama", "mistral".</summary>
    public required string ModelType { get; init; }
    /// <summary>hidden_size: width of the residual stream.</summary>
    public required int HiddenSize { get; init; }
    /// <summary>intermediate_size: width of the MLP.</summary>
    public required int IntermediateSize { get; init; }
    /// <summary>num_hidden_layers.</summary>
    public required int NumHiddenLayers { get; init; }
    /// <summary>num_attention_heads.</summary>
    public required int NumAttentionHeads { get; init; }
    /// <summary>num_key_value_heads (defaults to num_attention_heads).</summary>
    public required int NumKeyValueHeads { get; init; }
    /// <summary>vocab_size.</summary>
    public required int VocabSize { get; init; }
    /// <summary>head_dim (defaults to hidden_size / num_attention_heads).</summary>
    public required int HeadDim { get; init; }
    /// <summary>max_position_embeddings (default 2048).</summary>
    public int MaxPositionEmbeddings { get; init; } = 2048;
    /// <summary>rms_norm_eps (default 1e-6).</summary>
    public double RmsNormEps { get; init; } = 1e-6;
    /// <summary>rope_theta (default 10000).</summary>
    public double RopeTheta { get; init; } = 10000.0;
    /// <summary>rope_scaling, or null.</summary>
    public RopeScaling? RopeScaling { get; init; }
    /// <summary>tie_word_embeddings: lm_head shares the embedding matrix (HF default false).</summary>
    public bool TieWordEmbeddings { get; init; }
    /// <summary>hidden_act (default "silu").</summary>
    public string HiddenAct { get; init; } = "silu";
    /// <summary>torch_dtype as written, or null.</summary>
    public string? TorchDtype { get; init; }
    /// <summary>bos_token_id, or null.</summary>
    public int? BosTokenId { get; init; }
    /// <summary>eos_token_id(s); config.json may hold one id or a list.</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    /// <summary>Model types whose weights and config follow the Llama layout.</summary>
    public static readonly IReadOnlySet<string> SupportedModelTypes = new HashSet<string>(StringComparer.Ordinal) { "llama", "mistral" };

    /// <summary>Parameter count implied by the config (embeddings, layers, final norm, lm_head when untied).</summary>
    public long ParameterCount
    {
        get
        {
            long h = HiddenSize, kv = (long)NumKeyValueHeads * HeadDim, q = (long)NumAttentionHeads * HeadDim;
            long perLayer = h * q + 2 * h * kv + q * h + 3 * h * IntermediateSize + 2 * h;
            long total = (long)VocabSize * h + NumHiddenLayers * perLayer + h;
            if (!TieWordEmbeddings) total += (long)VocabSize * h;
            return total;
        }
    }

    /// <summary>Parses config.json text; <paramref name="path"/> only names the file in errors.</summary>
    /// <exception cref="TensorFormatException">invalid JSON, a missing or mistyped required field.</exception>
    public static LlamaConfig Parse(string json, string path)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw new TensorFormatException(path, null, "invalid JSON: " + e.Message, e); }
        using (doc)
        {
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) throw new TensorFormatException(path, null, "not a JSON object");
            string modelType = r.TryGetProperty("model_type", out var mt) && mt.ValueKind == JsonValueKind.String
                ? mt.GetString()! : throw new TensorFormatException(path, null, "missing \"model_type\"");
            int hidden = RequiredInt(r, "hidden_size", path);
            int heads = RequiredInt(r, "num_attention_heads", path);
            int kvHeads = OptionalInt(r, "num_key_value_heads", path) ?? heads;
            int headDim = OptionalInt(r, "head_dim", path) ?? (heads > 0 ? hidden / heads : 0);
            var cfg = new LlamaConfig
            {
                ModelType = modelType,
                HiddenSize = hidden,
                IntermediateSize = RequiredInt(r, "intermediate_size", path),
                NumHiddenLayers = RequiredInt(r, "num_hidden_layers", path),
                NumAttentionHeads = heads,
                NumKeyValueHeads = kvHeads,
                VocabSize = RequiredInt(r, "vocab_size", path),
                HeadDim = headDim,
                MaxPositionEmbeddings = OptionalInt(r, "max_position_embeddings", path) ?? 2048,
                RmsNormEps = OptionalDouble(r, "rms_norm_eps", path) ?? 1e-6,
                RopeTheta = OptionalDouble(r, "rope_theta", path) ?? 10000.0,
                RopeScaling = ParseRopeScaling(r, path),
                TieWordEmbeddings = r.TryGetProperty("tie_word_embeddings", out var tie) && tie.ValueKind == JsonValueKind.True,
                HiddenAct = r.TryGetProperty("hidden_act", out var act) && act.ValueKind == JsonValueKind.String ? act.GetString()! : "silu",
                TorchDtype = r.TryGetProperty("torch_dtype", out var td) && td.ValueKind == JsonValueKind.String ? td.GetString() : null,
                BosTokenId = OptionalInt(r, "bos_token_id", path),
                EosTokenIds = ParseIds(r, "eos_token_id", path),
            };
            if (hidden <= 0 || heads <= 0 || kvHeads <= 0 || cfg.NumHiddenLayers <= 0 || cfg.VocabSize <= 0 || cfg.IntermediateSize <= 0 || headDim <= 0)
                throw new TensorFormatException(path, null, "sizes must be positive");
            if (heads % kvHeads != 0)
                throw new TensorFormatException(path, null, $"num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}");
            return cfg;
        }
    }

    private static int RequiredInt(JsonElement r, string name, string path) =>
        OptionalInt(r, name, path) ?? throw new TensorFormatException(path, null, $"missing \"{name}\"");

    private static int? OptionalInt(JsonElement r, string name, string path)
    {
        if (!r.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i))
            throw new TensorFormatException(path, null, $"\"{name}\" must be an integer");
        return i;
    }

    private static double? OptionalDouble(JsonElement r, string name, string path)
    {
        if (!r.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number) throw new TensorFormatException(path, null, $"\"{name}\" must be a number");
        return v.GetDouble();
    }

    private static IReadOnlyList<int> ParseIds(JsonElement r, string name, string path)
    {
        if (!r.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return [];
        if (v.ValueKind == JsonValueKind.Number) return [v.GetInt32()];
        if (v.ValueKind == JsonValueKind.Array) return v.EnumerateArray().Select(e => e.GetInt32()).ToArray();
        throw new TensorFormatException(path, null, $"\"{name}\" must be an integer or a list of integers");
    }

    private static RopeScaling? ParseRopeScaling(JsonElement r, string path)
    {
        if (!r.TryGetProperty("rope_scaling", out var s) || s.ValueKind == JsonValueKind.Null) return null;
        if (s.ValueKind != JsonValueKind.Object) throw new TensorFormatException(path, null, "\"rope_scaling\" must be an object or null");
        string? type = s.TryGetProperty("rope_type", out var rt) ? rt.GetString() : s.TryGetProperty("type", out var t) ? t.GetString() : null;
        if (type is null) throw new TensorFormatException(path, null, "\"rope_scaling\" has no rope_type");
        return new RopeScaling(type,
            OptionalDouble(s, "factor", path) ?? 1.0,
            OptionalDouble(s, "low_freq_factor", path),
            OptionalDouble(s, "high_freq_factor", path),
            OptionalInt(s, "original_max_position_embeddings", path));
    }
}
