using System.Text.Json;
using System.Text.Json.Nodes;
using CycleQD.Tensors;

namespace CycleQD.Onnx.Sam;

/// <summary>config.json "vision_config" of a Hugging Face SamModel (the ViT image encoder), with transformers' defaults (sam-vit-huge's encoder widths aside).</summary>
public sealed record SamVisionConfig
{
    /// <summary>hidden_size: ViT width.</summary>
    public int HiddenSize { get; init; } = 768;
    /// <summary>output_channels: channels of the image embedding (the neck's output).</summary>
    public int OutputChannels { get; init; } = 256;
    /// <summary>num_hidden_layers: ViT blocks.</summary>
    public int NumHiddenLayers { get; init; } = 12;
    /// <summary>num_attention_heads.</summary>
    public int NumAttentionHeads { get; init; } = 12;
    /// <summary>num_channels: input image channels.</summary>
    public int NumChannels { get; init; } = 3;
    /// <summary>image_size: side of the square input, pixels.</summary>
    public int ImageSize { get; init; } = 1024;
    /// <summary>patch_size: side of a patch, pixels.</summary>
    public int PatchSize { get; init; } = 16;
    /// <summary>hidden_act of the MLP (only "gelu").</summary>
    public string HiddenAct { get; init; } = "gelu";
    /// <summary>layer_norm_eps of the ViT LayerNorms.</summary>
    public double LayerNormEps { get; init; } = 1e-6;
    /// <summary>qkv_bias: the qkv projection has a bias.</summary>
    public bool QkvBias { get; init; } = true;
    /// <summary>use_abs_pos: a learned absolute position embedding is added after the patch embedding.</summary>
    public bool UseAbsPos { get; init; } = true;
    /// <summary>use_rel_pos: attention adds decomposed relative position biases.</summary>
    public bool UseRelPos { get; init; } = true;
    /// <summary>window_size: side of an attention window, patches (0 = every block global).</summary>
    public int WindowSize { get; init; } = 14;
    /// <summary>global_attn_indexes: blocks that attend globally instead of in windows.</summary>
    public IReadOnlyList<int> GlobalAttnIndexes { get; init; } = [2, 5, 8, 11];
    /// <summary>num_pos_feats: random Fourier features per coordinate axis (the positional embedding is [2, num_pos_feats]).</summary>
    public int NumPosFeats { get; init; } = 128;
    /// <summary>mlp_dim (default hidden_size · mlp_ratio).</summary>
    public int MlpDim { get; init; } = 3072;

    /// <summary>Patches per side of the encoder grid (image_size / patch_size).</summary>
    public int GridSize => ImageSize / PatchSize;
    /// <summary>Width of one attention head.</summary>
    public int HeadDim => HiddenSize / NumAttentionHeads;
    /// <summary>Window side of block <paramref name="layer"/>, 0 for a global block.</summary>
    public int WindowOf(int layer) => GlobalAttnIndexes.Contains(layer) ? 0 : WindowSize;
}

/// <summary>config.json "prompt_encoder_config" of a Hugging Face SamModel.</summary>
public sealed record SamPromptEncoderConfig
{
    /// <summary>hidden_size: width of prompt tokens (equals the image embedding's channels).</summary>
    public int HiddenSize { get; init; } = 256;
    /// <summary>image_size: side of the encoder input, pixels; point coordinates are normalised by it.</summary>
    public int ImageSize { get; init; } = 1024;
    /// <summary>patch_size.</summary>
    public int PatchSize { get; init; } = 16;
    /// <summary>mask_input_channels of the mask embedding (whose weights exist but mask prompts are not supported).</summary>
    public int MaskInputChannels { get; init; } = 16;
    /// <summary>num_point_embeddings: background, foreground, box top-left, box bottom-right.</summary>
    public int NumPointEmbeddings { get; init; } = 4;
    /// <summary>hidden_act of the mask embedding.</summary>
    public string HiddenAct { get; init; } = "gelu";
    /// <summary>layer_norm_eps.</summary>
    public double LayerNormEps { get; init; } = 1e-6;
}

/// <summary>config.json "mask_decoder_config" of a Hugging Face SamModel.</summary>
public sealed record SamMaskDecoderConfig
{
    /// <summary>hidden_size: token width.</summary>
    public int HiddenSize { get; init; } = 256;
    /// <summary>hidden_act of the two-way transformer's MLP (only "relu").</summary>
    public string HiddenAct { get; init; } = "relu";
    /// <summary>mlp_dim of the two-way transformer's MLP.</summary>
    public int MlpDim { get; init; } = 2048;
    /// <summary>num_hidden_layers: two-way attention blocks.</summary>
    public int NumHiddenLayers { get; init; } = 2;
    /// <summary>num_attention_heads.</summary>
    public int NumAttentionHeads { get; init; } = 8;
    /// <summary>attention_downsample_rate: cross attentions project to hidden_size / rate.</summary>
    public int AttentionDownsampleRate { get; init; } = 2;
    /// <summary>num_multimask_outputs: masks in multimask mode (one more mask token exists for single-mask mode).</summary>
    public int NumMultimaskOutputs { get; init; } = 3;
    /// <summary>iou_head_depth: linear layers of the IoU head.</summary>
    public int IouHeadDepth { get; init; } = 3;
    /// <summary>iou_head_hidden_dim.</summary>
    public int IouHeadHiddenDim { get; init; } = 256;
    /// <summary>layer_norm_eps of the two-way blocks (the final token LayerNorm uses PyTorch's 1e-5).</summary>
    public double LayerNormEps { get; init; } = 1e-6;

    /// <summary>Mask tokens: num_multimask_outputs + 1.</summary>
    public int NumMaskTokens => NumMultimaskOutputs + 1;
}

/// <summary>The config.json of a Hugging Face SamModel folder (model_type "sam").</summary>
public sealed record SamConfig
{
    /// <summary>The image encoder.</summary>
    public SamVisionConfig Vision { get; init; } = new();
    /// <summary>The prompt encoder.</summary>
    public SamPromptEncoderConfig PromptEncoder { get; init; } = new();
    /// <summary>The mask decoder.</summary>
    public SamMaskDecoderConfig MaskDecoder { get; init; } = new();

    /// <summary>Side of the low-resolution mask logits: four times the embedding grid.</summary>
    public int LowResSize => 4 * Vision.GridSize;

    /// <summary>Reads and checks <paramref name="path"/>.</summary>
    /// <exception cref="TensorFormatException">missing file, invalid JSON, wrong model_type, a mistyped field or an unsupported combination (each names the field).</exception>
    public static SamConfig Load(string path)
    {
        if (!File.Exists(path)) throw new TensorFormatException(path, null, "missing: a SAM model folder needs config.json");
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses config.json text; <paramref name="path"/> only names the file in errors.</summary>
    /// <exception cref="TensorFormatException">see <see cref="Load"/>.</exception>
    public static SamConfig Parse(string json, string path)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw new TensorFormatException(path, null, "invalid JSON: " + e.Message, e); }
        using (doc)
        {
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) throw new TensorFormatException(path, null, "not a JSON object");
            string? modelType = r.TryGetProperty("model_type", out var mt) && mt.ValueKind == JsonValueKind.String ? mt.GetString() : null;
            if (modelType != "sam")
                throw new TensorFormatException(path, null, $"model_type is {(modelType is null ? "missing" : $"\"{modelType}\"")}; a SAM folder has \"sam\"");
            var v = new Reader(path, r, "vision_config");
            int hidden = v.Int("hidden_size", 768);
            var vision = new SamVisionConfig
            {
                HiddenSize = hidden,
                OutputChannels = v.Int("output_channels", 256),
                NumHiddenLayers = v.Int("num_hidden_layers", 12),
                NumAttentionHeads = v.Int("num_attention_heads", 12),
                NumChannels = v.Int("num_channels", 3),
                ImageSize = v.Int("image_size", 1024),
                PatchSize = v.Int("patch_size", 16),
                HiddenAct = v.String("hidden_act", "gelu"),
                LayerNormEps = v.Double("layer_norm_eps", 1e-6),
                QkvBias = v.Bool("qkv_bias", true),
                UseAbsPos = v.Bool("use_abs_pos", true),
                UseRelPos = v.Bool("use_rel_pos", true),
                WindowSize = v.Int("window_size", 14),
                GlobalAttnIndexes = v.Ints("global_attn_indexes", [2, 5, 8, 11]),
                NumPosFeats = v.Int("num_pos_feats", 128),
                MlpDim = v.OptionalInt("mlp_dim") ?? (int)(hidden * v.Double("mlp_ratio", 4.0)),
            };
            var p = new Reader(path, r, "prompt_encoder_config");
            var prompt = new SamPromptEncoderConfig
            {
                HiddenSize = p.Int("hidden_size", 256),
                ImageSize = p.Int("image_size", 1024),
                PatchSize = p.Int("patch_size", 16),
                MaskInputChannels = p.Int("mask_input_channels", 16),
                NumPointEmbeddings = p.Int("num_point_embeddings", 4),
                HiddenAct = p.String("hidden_act", "gelu"),
                LayerNormEps = p.Double("layer_norm_eps", 1e-6),
            };
            var m = new Reader(path, r, "mask_decoder_config");
            var decoder = new SamMaskDecoderConfig
            {
                HiddenSize = m.Int("hidden_size", 256),
                HiddenAct = m.String("hidden_act", "relu"),
                MlpDim = m.Int("mlp_dim", 2048),
                NumHiddenLayers = m.Int("num_hidden_layers", 2),
                NumAttentionHeads = m.Int("num_attention_heads", 8),
                AttentionDownsampleRate = m.Int("attention_downsample_rate", 2),
                NumMultimaskOutputs = m.Int("num_multimask_outputs", 3),
                IouHeadDepth = m.Int("iou_head_depth", 3),
                IouHeadHiddenDim = m.Int("iou_head_hidden_dim", 256),
                LayerNormEps = m.Double("layer_norm_eps", 1e-6),
            };
            var config = new SamConfig { Vision = vision, PromptEncoder = prompt, MaskDecoder = decoder };
            config.Validate(path);
            return config;
        }
    }

    /// <summary>Rejects configs the graphs cannot represent, naming the field at fault.</summary>
    /// <exception cref="TensorFormatException">an inconsistent or unsupported field.</exception>
    public void Validate(string path)
    {
        var v = Vision;
        var p = PromptEncoder;
        var m = MaskDecoder;
        void Check(bool ok, string message) { if (!ok) throw new TensorFormatException(path, null, message); }
        foreach (var (name, value) in new[]
        {
            ("vision_config.hidden_size", v.HiddenSize), ("vision_config.output_channels", v.OutputChannels),
            ("vision_config.num_hidden_layers", v.NumHiddenLayers), ("vision_config.num_attention_heads", v.NumAttentionHeads),
            ("vision_config.num_channels", v.NumChannels), ("vision_config.image_size", v.ImageSize), ("vision_config.patch_size", v.PatchSize),
            ("vision_config.num_pos_feats", v.NumPosFeats), ("vision_config.mlp_dim", v.MlpDim),
            ("prompt_encoder_config.hidden_size", p.HiddenSize), ("prompt_encoder_config.image_size", p.ImageSize),
            ("mask_decoder_config.hidden_size", m.HiddenSize), ("mask_decoder_config.mlp_dim", m.MlpDim),
            ("mask_decoder_config.num_hidden_layers", m.NumHiddenLayers), ("mask_decoder_config.num_attention_heads", m.NumAttentionHeads),
            ("mask_decoder_config.attention_downsample_rate", m.AttentionDownsampleRate), ("mask_decoder_config.num_multimask_outputs", m.NumMultimaskOutputs),
            ("mask_decoder_config.iou_head_hidden_dim", m.IouHeadHiddenDim),
        })
            Check(value > 0, $"{name} is {value}; it must be positive");
        Check(v.WindowSize >= 0, $"vision_config.window_size is {v.WindowSize}; it must be 0 or positive");
        Check(v.ImageSize % v.PatchSize == 0, $"vision_config.image_size {v.ImageSize} is not a multiple of patch_size {v.PatchSize}");
        Check(v.HiddenSize % v.NumAttentionHeads == 0, $"vision_config.hidden_size {v.HiddenSize} is not divisible by num_attention_heads {v.NumAttentionHeads}");
        Check(v.HiddenAct == "gelu", $"vision_config.hidden_act \"{v.HiddenAct}\" is not supported (only gelu)");
        foreach (int g in v.GlobalAttnIndexes)
            Check(g >= 0 && g < v.NumHiddenLayers, $"vision_config.global_attn_indexes holds {g}, outside the {v.NumHiddenLayers} layers");
        Check(2 * v.NumPosFeats == v.OutputChannels, $"vision_config.num_pos_feats {v.NumPosFeats} must be half of output_channels {v.OutputChannels} (sin and cos features make the positional encoding)");
        Check(p.HiddenSize == v.OutputChannels, $"prompt_encoder_config.hidden_size {p.HiddenSize} differs from vision_config.output_channels {v.OutputChannels}");
        Check(m.HiddenSize == v.OutputChannels, $"mask_decoder_config.hidden_size {m.HiddenSize} differs from vision_config.output_channels {v.OutputChannels}");
        Check(p.ImageSize == v.ImageSize, $"prompt_encoder_config.image_size {p.ImageSize} differs from vision_config.image_size {v.ImageSize}");
        Check(p.NumPointEmbeddings == 4, $"prompt_encoder_config.num_point_embeddings is {p.NumPointEmbeddings}; SAM's prompt encoder has 4 (background, foreground, two box corners)");
        Check(p.MaskInputChannels % 4 == 0 && p.MaskInputChannels > 0, $"prompt_encoder_config.mask_input_channels {p.MaskInputChannels} must be a positive multiple of 4");
        Check(m.HiddenSize % 8 == 0, $"mask_decoder_config.hidden_size {m.HiddenSize} must be divisible by 8 (the upscaling halves channels twice more)");
        Check(m.HiddenSize % m.NumAttentionHeads == 0, $"mask_decoder_config.hidden_size {m.HiddenSize} is not divisible by num_attention_heads {m.NumAttentionHeads}");
        Check(m.HiddenSize % m.AttentionDownsampleRate == 0 && (m.HiddenSize / m.AttentionDownsampleRate) % m.NumAttentionHeads == 0,
            $"mask_decoder_config: hidden_size / attention_downsample_rate ({m.HiddenSize}/{m.AttentionDownsampleRate}) must be a multiple of num_attention_heads {m.NumAttentionHeads}");
        Check(m.HiddenAct == "relu", $"mask_decoder_config.hidden_act \"{m.HiddenAct}\" is not supported (only relu)");
        Check(m.IouHeadDepth >= 2, $"mask_decoder_config.iou_head_depth is {m.IouHeadDepth}; it must be at least 2");
    }

    /// <summary>config.json text in transformers' SamConfig layout (model_type "sam", architectures ["SamModel"]).</summary>
    public string ToJson()
    {
        var v = Vision;
        var p = PromptEncoder;
        var m = MaskDecoder;
        var root = new JsonObject
        {
            ["architectures"] = new JsonArray("SamModel"),
            ["model_type"] = "sam",
            ["initializer_range"] = 0.02,
            ["torch_dtype"] = "float32",
            ["vision_config"] = new JsonObject
            {
                ["model_type"] = "sam_vision_model",
                ["hidden_size"] = v.HiddenSize,
                ["output_channels"] = v.OutputChannels,
                ["num_hidden_layers"] = v.NumHiddenLayers,
                ["num_attention_heads"] = v.NumAttentionHeads,
                ["num_channels"] = v.NumChannels,
                ["image_size"] = v.ImageSize,
                ["patch_size"] = v.PatchSize,
                ["hidden_act"] = v.HiddenAct,
                ["layer_norm_eps"] = v.LayerNormEps,
                ["attention_dropout"] = 0.0,
                ["initializer_range"] = 1e-10,
                ["qkv_bias"] = v.QkvBias,
                ["mlp_ratio"] = (double)v.MlpDim / v.HiddenSize,
                ["use_abs_pos"] = v.UseAbsPos,
                ["use_rel_pos"] = v.UseRelPos,
                ["window_size"] = v.WindowSize,
                ["global_attn_indexes"] = new JsonArray(v.GlobalAttnIndexes.Select(i => (JsonNode)i).ToArray()),
                ["num_pos_feats"] = v.NumPosFeats,
                ["mlp_dim"] = v.MlpDim,
            },
            ["prompt_encoder_config"] = new JsonObject
            {
                ["model_type"] = "",
                ["hidden_size"] = p.HiddenSize,
                ["image_size"] = p.ImageSize,
                ["patch_size"] = p.PatchSize,
                ["mask_input_channels"] = p.MaskInputChannels,
                ["num_point_embeddings"] = p.NumPointEmbeddings,
                ["hidden_act"] = p.HiddenAct,
                ["layer_norm_eps"] = p.LayerNormEps,
            },
            ["mask_decoder_config"] = new JsonObject
            {
                ["model_type"] = "",
                ["hidden_size"] = m.HiddenSize,
                ["hidden_act"] = m.HiddenAct,
                ["mlp_dim"] = m.MlpDim,
                ["num_hidden_layers"] = m.NumHiddenLayers,
                ["num_attention_heads"] = m.NumAttentionHeads,
                ["attention_downsample_rate"] = m.AttentionDownsampleRate,
                ["num_multimask_outputs"] = m.NumMultimaskOutputs,
                ["iou_head_depth"] = m.IouHeadDepth,
                ["iou_head_hidden_dim"] = m.IouHeadHiddenDim,
                ["layer_norm_eps"] = m.LayerNormEps,
            },
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Reads one sub-config object, naming "section.field" in errors.</summary>
    private readonly struct Reader
    {
        private readonly string _path;
        private readonly string _section;
        private readonly JsonElement? _object;

        public Reader(string path, JsonElement root, string section)
        {
            _path = path;
            _section = section;
            if (!root.TryGetProperty(section, out var o) || o.ValueKind == JsonValueKind.Null) _object = null;
            else if (o.ValueKind != JsonValueKind.Object) throw new TensorFormatException(path, null, $"{section} is not a JSON object");
            else _object = o;
        }

        private JsonElement? Get(string field) =>
            _object is JsonElement o && o.TryGetProperty(field, out var e) && e.ValueKind != JsonValueKind.Null ? e : null;

        private TensorFormatException Wrong(string field, string expected, JsonElement e) =>
            new(_path, null, $"{_section}.{field} must be {expected}, found {e.GetRawText()}");

        public int? OptionalInt(string field)
        {
            if (Get(field) is not JsonElement e) return null;
            if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int i)) return i;
            throw Wrong(field, "an integer", e);
        }

        public int Int(string field, int fallback) => OptionalInt(field) ?? fallback;

        public double Double(string field, double fallback)
        {
            if (Get(field) is not JsonElement e) return fallback;
            if (e.ValueKind == JsonValueKind.Number) return e.GetDouble();
            throw Wrong(field, "a number", e);
        }

        public bool Bool(string field, bool fallback)
        {
            if (Get(field) is not JsonElement e) return fallback;
            if (e.ValueKind is JsonValueKind.True or JsonValueKind.False) return e.GetBoolean();
            throw Wrong(field, "true or false", e);
        }

        public string String(string field, string fallback)
        {
            if (Get(field) is not JsonElement e) return fallback;
            if (e.ValueKind == JsonValueKind.String) return e.GetString()!;
            throw Wrong(field, "a string", e);
        }

        public IReadOnlyList<int> Ints(string field, int[] fallback)
        {
            if (Get(field) is not JsonElement e) return fallback;
            if (e.ValueKind != JsonValueKind.Array) throw Wrong(field, "a list of integers", e);
            var list = new List<int>();
            foreach (var x in e.EnumerateArray())
            {
                if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt32(out int i)) throw Wrong(field, "a list of integers", e);
                list.Add(i);
            }
            return list;
        }
    }
}
