using CycleQD.Core.Random;
using CycleQD.Onnx.Graph;
using CycleQD.Tensors;

namespace CycleQD.Onnx.Sam;

/// <summary>
/// Writes small random SAM models as Hugging Face SamModel folders (config.json +
/// model.safetensors, transformers' names and shapes), for tests, demos and benchmarks: the
/// same structure as sam-vit-base (windowed and global ViT blocks with window padding, neck,
/// prompt encoder, two-way mask decoder) with about a thousand times fewer parameters. Every value
/// is drawn from Philox4x32-10, so a seed gives the same model on every machine. "Experts" are a
/// base plus a seeded random task vector, the way fine-tuned SAM experts differ from their base.
/// </summary>
public static class TinySamWriter
{
    /// <summary>
    /// The tiny architecture: ViT width 32, 2 heads, 2 blocks (block 0 windowed with window 3,
    /// which pads the 8×8 grid to 9×9; block 1 global), 128-pixel input, patch 16, 32 output
    /// channels; decoder width 32, 4 heads, 2 two-way blocks, 3 multimask outputs; low-res masks 32×32.
    /// </summary>
    /// <param name="imageSize">Input side in pixels, a multiple of 16.</param>
    public static SamConfig Config(int imageSize = 128) => new()
    {
        Vision = new SamVisionConfig
        {
            HiddenSize = 32, OutputChannels = 32, NumHiddenLayers = 2, NumAttentionHeads = 2, NumChannels = 3,
            ImageSize = imageSize, PatchSize = 16, WindowSize = 3, GlobalAttnIndexes = [1], NumPosFeats = 16, MlpDim = 64,
        },
        PromptEncoder = new SamPromptEncoderConfig { HiddenSize = 32, ImageSize = imageSize, PatchSize = 16, MaskInputChannels = 8 },
        MaskDecoder = new SamMaskDecoderConfig
        {
            HiddenSize = 32, MlpDim = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, AttentionDownsampleRate = 2,
            NumMultimaskOutputs = 3, IouHeadDepth = 3, IouHeadHiddenDim = 32,
        },
    };

    /// <summary>
    /// Random weights of <paramref name="config"/> for <paramref name="seed"/>: LayerNorm scales near 1,
    /// biases and embeddings small, matrices and convolutions with entries of order 1/sqrt(fan-in).
    /// Tensor i of <see cref="SamWeightLayout.All"/> uses Philox stream i, purpose 0.
    /// </summary>
    /// <returns>Row-major float32 arrays by tensor name (freshly allocated; the caller owns them).</returns>
    public static Dictionary<string, float[]> Weights(SamConfig config, ulong seed)
    {
        var layout = SamWeightLayout.All(config);
        var result = new Dictionary<string, float[]>(StringComparer.Ordinal);
        for (int t = 0; t < layout.Count; t++)
        {
            var spec = layout[t];
            var (offset, scale) = Role(spec);
            var data = new float[Count(spec)];
            for (int i = 0; i < data.Length; i++)
                data[i] = (float)(offset + scale * Signed(seed, (uint)t, 0, i));
            result[spec.Name] = data;
        }
        return result;
    }

    /// <summary>
    /// Base weights plus a task vector: each value moves by <paramref name="relativeScale"/> times its
    /// tensor's initialisation scale times a uniform number in [-1, 1) drawn from <paramref name="taskSeed"/>
    /// (Philox stream = tensor index, purpose 1).
    /// </summary>
    public static Dictionary<string, float[]> Expert(SamConfig config, ulong baseSeed, ulong taskSeed, double relativeScale = 0.1)
    {
        var weights = Weights(config, baseSeed);
        var layout = SamWeightLayout.All(config);
        for (int t = 0; t < layout.Count; t++)
        {
            var spec = layout[t];
            double scale = relativeScale * Role(spec).Scale;
            var data = weights[spec.Name];
            for (int i = 0; i < data.Length; i++)
                data[i] += (float)(scale * Signed(taskSeed, (uint)t, 1, i));
        }
        return weights;
    }

    /// <summary>Writes a base model into <paramref name="directory"/> (created if needed; files replaced).</summary>
    /// <param name="directory">Destination folder.</param>
    /// <param name="seed">Weight seed.</param>
    /// <param name="config">Architecture; <see cref="Config"/> when null.</param>
    /// <param name="dtype">Storage type of the tensors (F32, F16 or BF16).</param>
    /// <returns>The architecture written.</returns>
    public static SamConfig WriteBase(string directory, ulong seed, SamConfig? config = null, DType dtype = DType.F32)
    {
        config ??= Config();
        Write(directory, config, Weights(config, seed), dtype);
        return config;
    }

    /// <summary>Writes an expert (<see cref="Expert"/>) into <paramref name="directory"/>.</summary>
    /// <returns>The architecture written.</returns>
    public static SamConfig WriteExpert(string directory, ulong baseSeed, ulong taskSeed, double relativeScale = 0.1, SamConfig? config = null, DType dtype = DType.F32)
    {
        config ??= Config();
        Write(directory, config, Expert(config, baseSeed, taskSeed, relativeScale), dtype);
        return config;
    }

    /// <summary>
    /// Writes config.json and model.safetensors for <paramref name="tensors"/>, in the order of
    /// <see cref="SamWeightLayout.All"/>; every tensor of the layout must be present with its element count.
    /// </summary>
    /// <exception cref="ArgumentException">a tensor is missing or has the wrong number of values.</exception>
    public static void Write(string directory, SamConfig config, IReadOnlyDictionary<string, float[]> tensors, DType dtype = DType.F32)
    {
        config.Validate(Path.Combine(directory, "config.json"));
        var list = new List<TensorData>();
        foreach (var spec in SamWeightLayout.All(config))
        {
            if (!tensors.TryGetValue(spec.Name, out var data))
                throw new ArgumentException($"tensor '{spec.Name}' is missing", nameof(tensors));
            if (data.Length != Count(spec))
                throw new ArgumentException($"tensor '{spec.Name}': {data.Length} values, shape [{string.Join(", ", spec.Shape)}] needs {Count(spec)}", nameof(tensors));
            list.Add(TensorData.FromSingle(spec.Name, dtype, spec.Shape, data));
        }
        Directory.CreateDirectory(directory);
        SafetensorsWriter.WriteFile(Path.Combine(directory, SafetensorsWriter.SingleFileName), list, new Dictionary<string, string> { ["format"] = "pt" });
        SafetensorsWriter.WriteAtomically(Path.Combine(directory, "config.json"), s =>
        {
            var bytes = System.Text.Encoding.UTF8.GetBytes(config.ToJson());
            s.Write(bytes);
        });
    }

    private static long Count(LlamaWeightSpec spec) => spec.Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Uniform in [-1, 1) from Philox (seed, stream, generation 0, purpose, index).</summary>
    private static double Signed(ulong seed, uint stream, uint purpose, long index) =>
        2.0 * Philox4x32.Uniform(seed, stream, 0, purpose, (ulong)index) - 1.0;

    /// <summary>Initialisation offset and half-width by tensor role.</summary>
    private static (double Offset, double Scale) Role(LlamaWeightSpec spec)
    {
        string n = spec.Name;
        if (n.Contains("layer_norm", StringComparison.Ordinal) && n.EndsWith(".weight", StringComparison.Ordinal)) return (1.0, 0.1);
        if (n.EndsWith(".bias", StringComparison.Ordinal)) return (0.0, 0.1);
        if (n == SamWeightLayout.PositionalEmbedding) return (0.0, 1.0);
        if (n.EndsWith("pos_embed", StringComparison.Ordinal) || n.Contains("rel_pos", StringComparison.Ordinal)) return (0.0, 0.3);
        if (n.StartsWith("prompt_encoder.", StringComparison.Ordinal) && !n.Contains("mask_embed", StringComparison.Ordinal)) return (0.0, 0.5);
        if (n.EndsWith("iou_token.weight", StringComparison.Ordinal) || n.EndsWith("mask_tokens.weight", StringComparison.Ordinal)) return (0.0, 0.5);
        // A transposed convolution with stride = kernel sums over input channels only.
        long fanIn = n.Contains("upscale_conv", StringComparison.Ordinal) ? spec.Shape[0] : spec.Shape.Skip(1).Aggregate(1L, (a, b) => a * b);
        return (0.0, 1.5 / Math.Sqrt(fanIn));
    }
}
