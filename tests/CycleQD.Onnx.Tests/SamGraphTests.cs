using CycleQD.Onnx.Sam;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

/// <summary>The SAM graphs on ONNX Runtime against the float64 reference forward, on tiny random models.</summary>
public sealed class SamGraphTests
{
    private const ulong Seed = 20260;
    private const double Tolerance = 1e-4;

    private static float[] RandomPixels(SamConfig config, int seed)
    {
        var rng = new Random(seed);
        var px = new float[config.Vision.NumChannels * config.Vision.ImageSize * config.Vision.ImageSize];
        for (int i = 0; i < px.Length; i++) px[i] = (float)(rng.NextDouble() * 4 - 2);
        return px;
    }

    private static double RelativeError(float[] actual, double[] expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double num = 0, den = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            Assert.True(float.IsFinite(actual[i]), $"value {i} is {actual[i]}");
            num += (actual[i] - expected[i]) * (actual[i] - expected[i]);
            den += expected[i] * expected[i];
        }
        Assert.True(den > 0, "reference is all zeros");
        double err = Math.Sqrt(num / den);
        TestContext.Current.TestOutputHelper?.WriteLine($"rel. error {err:E3} over {actual.Length} values");
        return err;
    }

    [Fact]
    public void TinyWriter_WritesTransformersNamesAndConfig()
    {
        using var dir = new TempDir();
        var config = TinySamWriter.WriteBase(dir.Path, Seed);
        var parsed = SamConfig.Load(dir.File("config.json"));
        Assert.Equal(config.Vision with { GlobalAttnIndexes = [] }, parsed.Vision with { GlobalAttnIndexes = [] });
        Assert.Equal(config.Vision.GlobalAttnIndexes, parsed.Vision.GlobalAttnIndexes);
        Assert.Equal(config.MaskDecoder, parsed.MaskDecoder);
        Assert.Equal(config.PromptEncoder, parsed.PromptEncoder);
        using var file = SafetensorsModel.Open(dir.Path);
        Assert.Equal(SamWeightLayout.All(config).Count, file.Tensors.Count);
        Assert.Equal([32, 8, 2, 2], file.GetInfo("mask_decoder.upscale_conv1.weight").Shape);
        Assert.Equal([5, 16], file.GetInfo("vision_encoder.layers.0.attn.rel_pos_h").Shape); // window 3 → 2·3−1 rows
        Assert.Equal([15, 16], file.GetInfo("vision_encoder.layers.1.attn.rel_pos_h").Shape); // global over the 8×8 grid
        // The same seed gives the same bytes; a task vector moves every tensor.
        var again = TinySamWriter.Weights(config, Seed);
        Assert.Equal(again["vision_encoder.pos_embed"], file.ReadSingle("vision_encoder.pos_embed"));
        var expert = TinySamWriter.Expert(config, Seed, 7);
        Assert.All(again, kv => Assert.NotEqual(kv.Value, expert[kv.Key]));
    }

    [Fact]
    public void EncodeImage_MatchesFloat64Reference()
    {
        using var dir = new TempDir();
        var config = TinySamWriter.WriteBase(dir.Path, Seed);
        using var model = SamModel.Open(dir.Path);
        var pixels = RandomPixels(config, 1);
        var reference = new ReferenceSam(config, TinySamWriter.Weights(config, Seed));
        double err = RelativeError(model.EncodeImage(pixels), reference.Encode(pixels));
        Assert.True(err < Tolerance, $"image embedding rel. error {err:E3}");
    }

    public static TheoryData<string> Variants => new() { "no-padding", "no-rel-pos-no-qkv-bias", "all-global" };

    [Theory]
    [MemberData(nameof(Variants))]
    public void EncodeImage_ConfigVariants_MatchFloat64Reference(string variant)
    {
        var tiny = TinySamWriter.Config(96); // 6×6 grid: window 3 tiles it exactly
        var config = variant switch
        {
            "no-padding" => tiny with { Vision = tiny.Vision with { NumHiddenLayers = 3, NumAttentionHeads = 4, GlobalAttnIndexes = [0, 2] } },
            "no-rel-pos-no-qkv-bias" => tiny with { Vision = tiny.Vision with { UseRelPos = false, QkvBias = false, WindowSize = 4 } },
            _ => tiny with { Vision = tiny.Vision with { WindowSize = 0, GlobalAttnIndexes = [] } },
        };
        using var dir = new TempDir();
        TinySamWriter.WriteBase(dir.Path, Seed, config);
        using var model = SamModel.Open(dir.Path);
        var pixels = RandomPixels(config, 5);
        double err = RelativeError(model.EncodeImage(pixels), new ReferenceSam(config, TinySamWriter.Weights(config, Seed)).Encode(pixels));
        Assert.True(err < Tolerance, $"image embedding rel. error {err:E3}");
        var prompt = new SamPrompt([10f, 12f, 60f, 70f], null, null);
        var output = model.Decode(model.EncodeImage(pixels), prompt, true);
        Assert.Equal(24, output.LowResSize);
    }

    public static TheoryData<string, bool> Prompts => new()
    {
        { "box", true }, { "box", false }, { "points", true }, { "points", false }, { "box+point", true },
    };

    private static SamPrompt Prompt(string kind) => kind switch
    {
        "box" => new SamPrompt([20.5f, 31f, 97f, 110.25f], null, null),
        "points" => new SamPrompt(null, [64f, 40f, 12.5f, 100f], [1, 0]),
        _ => new SamPrompt([10f, 12f, 80f, 90f], [50f, 60f], [1]),
    };

    [Theory]
    [MemberData(nameof(Prompts))]
    public void Decode_MatchesFloat64Reference(string kind, bool multimask)
    {
        using var dir = new TempDir();
        var config = TinySamWriter.WriteBase(dir.Path, Seed);
        using var model = SamModel.Open(dir.Path);
        var embedding = model.EncodeImage(RandomPixels(config, 2));
        var prompt = Prompt(kind);
        var output = model.Decode(embedding, prompt, multimask);

        var (masks, iou) = new ReferenceSam(config, TinySamWriter.Weights(config, Seed)).Decode(embedding, prompt);
        int plane = config.LowResSize * config.LowResSize, first = multimask ? 1 : 0, count = multimask ? 3 : 1;
        Assert.Equal(count, output.MaskCount);
        Assert.Equal(32, output.LowResSize);
        double maskErr = RelativeError(output.LowResMasks, masks.AsSpan(first * plane, count * plane).ToArray());
        double iouErr = RelativeError(output.IouPredictions, iou.AsSpan(first, count).ToArray());
        Assert.True(maskErr < Tolerance, $"low-res masks rel. error {maskErr:E3}");
        Assert.True(iouErr < Tolerance, $"IoU predictions rel. error {iouErr:E3}");
    }

    [Fact]
    public void WithWeights_RunsAnExpertOnTheSameSessions()
    {
        using var baseDir = new TempDir();
        using var expertDir = new TempDir();
        var config = TinySamWriter.WriteBase(baseDir.Path, Seed);
        TinySamWriter.WriteExpert(expertDir.Path, Seed, 99);
        using var model = SamModel.Open(baseDir.Path);
        using var expertFolder = SamModel.Open(expertDir.Path);
        var expertWeights = TinySamWriter.Expert(config, Seed, 99);
        using var swapped = model.WithWeights(expertWeights, "expert 99");
        var pixels = RandomPixels(config, 3);
        var prompt = Prompt("box");

        var viaSwap = swapped.EncodeImage(pixels);
        var viaFolder = expertFolder.EncodeImage(pixels);
        Assert.Equal(viaFolder, viaSwap);
        Assert.NotEqual(model.EncodeImage(pixels), viaSwap);
        Assert.Equal(expertFolder.Decode(viaFolder, prompt, true).LowResMasks, swapped.Decode(viaSwap, prompt, true).LowResMasks);

        // The arrays are bound in place: an edit shows in the next run without rebinding.
        foreach (var t in expertWeights.Values) Array.Clear(t);
        var ones = expertWeights["vision_encoder.neck.layer_norm2.weight"];
        Array.Fill(ones, 1f);
        var bias = expertWeights["vision_encoder.neck.layer_norm2.bias"];
        Array.Fill(bias, 0.25f);
        // With all weights zero the neck's second conv outputs zeros, so its channel norm returns the bias.
        Assert.All(swapped.EncodeImage(pixels), x => Assert.Equal(0.25f, x));
    }

    [Fact]
    public void HalfPrecisionCheckpoint_IsConvertedAtLoad()
    {
        using var dir = new TempDir();
        var config = TinySamWriter.WriteBase(dir.Path, Seed, dtype: DType.BF16);
        using var model = SamModel.Open(dir.Path);
        Dictionary<string, float[]> stored;
        using (var file = SafetensorsModel.Open(dir.Path))
            stored = SamWeightLayout.All(config).ToDictionary(s => s.Name, s => file.ReadSingle(s.Name));
        var pixels = RandomPixels(config, 4);
        double err = RelativeError(model.EncodeImage(pixels), new ReferenceSam(config, stored).Encode(pixels));
        Assert.True(err < Tolerance, $"image embedding rel. error {err:E3}");
    }

    [Fact]
    public void Decode_BadPrompt_IsRejected()
    {
        using var dir = new TempDir();
        TinySamWriter.WriteBase(dir.Path, Seed);
        using var model = SamModel.Open(dir.Path);
        var embedding = new float[32 * 8 * 8];
        Assert.Contains("neither a box nor points", Assert.Throws<ArgumentException>(() => model.Decode(embedding, new SamPrompt(null, null, null), true)).Message);
        Assert.Contains("labels", Assert.Throws<ArgumentException>(() => model.Decode(embedding, new SamPrompt(null, [1f, 2f], null), true)).Message);
        Assert.Contains("label 5", Assert.Throws<ArgumentException>(() => model.Decode(embedding, new SamPrompt(null, [1f, 2f], [5]), true)).Message);
        Assert.Contains("x0, y0, x1, y1", Assert.Throws<ArgumentException>(() => model.Decode(embedding, new SamPrompt([1f, 2f, 3f], null, null), true)).Message);
        Assert.Contains("embedding", Assert.Throws<ArgumentException>(() => model.Decode(new float[5], new SamPrompt([1f, 2f, 3f, 4f], null, null), true)).Message);
        Assert.Contains("pixels", Assert.Throws<ArgumentException>(() => model.EncodeImage(new float[7])).Message);
    }
}

/// <summary>Each broken SAM folder gives one error naming the file and the tensor or config field at fault.</summary>
public sealed class BadSamFolderTests
{
    private static TempDir Rewrite(Func<string, float[], TensorData?> rewrite)
    {
        var dir = new TempDir();
        var config = TinySamWriter.WriteBase(dir.Path, 5);
        var weights = TinySamWriter.Weights(config, 5);
        var tensors = new List<TensorData>();
        foreach (var spec in SamWeightLayout.All(config))
        {
            var t = rewrite(spec.Name, weights[spec.Name]) ?? TensorData.FromSingle(spec.Name, DType.F32, spec.Shape, weights[spec.Name]);
            if (t.Name != "-") tensors.Add(t);
        }
        SafetensorsWriter.WriteFile(dir.File("model.safetensors"), tensors);
        return dir;
    }

    private static readonly TensorData Drop = new("-", DType.F32, [0], _ => { });

    [Fact]
    public void MissingTensor_ErrorNamesTensor()
    {
        const string name = "mask_decoder.output_hypernetworks_mlps.2.proj_out.weight";
        using var dir = Rewrite((n, _) => n == name ? Drop : null);
        var e = Assert.Throws<TensorFormatException>(() => SamModel.Open(dir.Path));
        Assert.Contains(name, e.Message);
        Assert.Contains("missing", e.Message);
        Assert.Contains("[4, 32]", e.Message);
    }

    [Fact]
    public void WrongShape_ErrorNamesTensorAndShapes()
    {
        const string name = "vision_encoder.layers.0.attn.rel_pos_w";
        using var dir = Rewrite((n, data) => n == name ? TensorData.FromSingle(n, DType.F32, [15, 16], new float[15 * 16]) : null);
        var e = Assert.Throws<TensorFormatException>(() => SamModel.Open(dir.Path));
        Assert.Contains(name, e.Message);
        Assert.Contains("[15, 16]", e.Message);
        Assert.Contains("[5, 16]", e.Message);
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void ExtraTensor_IsRejectedByName()
    {
        using var dir = Rewrite((_, _) => null);
        var tensors = new List<TensorData>();
        using (var src = SafetensorsModel.Open(dir.Path))
        {
            foreach (var t in src.Tensors) tensors.Add(TensorData.FromBytes(t.Name, t.DType, t.Shape, src.GetBytes(t.Name).ToArray()));
        }
        tensors.Add(TensorData.FromSingle("mask_decoder.extra_head.weight", DType.F32, [2], new float[2]));
        SafetensorsWriter.WriteFile(dir.File("model.safetensors"), tensors);
        var e = Assert.Throws<TensorFormatException>(() => SamModel.Open(dir.Path));
        Assert.Contains("mask_decoder.extra_head.weight", e.Message);
    }

    [Fact]
    public void TiedPositionalEmbeddingCopy_IsAccepted()
    {
        using var dir = Rewrite((_, _) => null);
        var tensors = new List<TensorData>();
        using (var src = SafetensorsModel.Open(dir.Path))
        {
            foreach (var t in src.Tensors) tensors.Add(TensorData.FromBytes(t.Name, t.DType, t.Shape, src.GetBytes(t.Name).ToArray()));
            tensors.Add(TensorData.FromBytes(SamWeightLayout.TiedPositionalEmbedding, DType.F32, [2, 16], src.GetBytes(SamWeightLayout.PositionalEmbedding).ToArray()));
        }
        SafetensorsWriter.WriteFile(dir.File("model.safetensors"), tensors);
        using var model = SamModel.Open(dir.Path);
        Assert.Equal(128, model.ImageSize);
    }

    [Theory]
    [InlineData("\"model_type\": \"sam\"", "\"model_type\": \"llama\"", "model_type")]
    [InlineData("\"num_pos_feats\": 16", "\"num_pos_feats\": 12", "vision_config.num_pos_feats")]
    [InlineData("\"iou_head_hidden_dim\": 32", "\"iou_head_hidden_dim\": \"wide\"", "mask_decoder_config.iou_head_hidden_dim")]
    [InlineData("\"window_size\": 3", "\"window_size\": -3", "vision_config.window_size")]
    public void BadConfig_ErrorNamesField(string find, string replace, string field)
    {
        using var dir = new TempDir();
        TinySamWriter.WriteBase(dir.Path, 5);
        string json = File.ReadAllText(dir.File("config.json"));
        Assert.Contains(find, json);
        File.WriteAllText(dir.File("config.json"), json.Replace(find, replace));
        var e = Assert.Throws<TensorFormatException>(() => SamModel.Open(dir.Path));
        Assert.Contains(field, e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void MissingConfig_IsNamed()
    {
        using var dir = new TempDir();
        TinySamWriter.WriteBase(dir.Path, 5);
        File.Delete(dir.File("config.json"));
        var e = Assert.Throws<TensorFormatException>(() => SamModel.Open(dir.Path));
        Assert.Contains("config.json", e.Message);
    }
}
