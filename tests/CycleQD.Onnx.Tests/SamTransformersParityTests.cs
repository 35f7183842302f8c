using CycleQD.Onnx.Sam;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

/// <summary>
/// A tiny random SamModel written by Hugging Face transformers itself (TestData/sam-tiny-transformers:
/// make.py ran transformers 5.17.0 / torch 2.11.0, saved the model with save_pretrained and its float64
/// forward's outputs, rounded to float32, in io.safetensors). The folder must open as it is, and the
/// ONNX Runtime graphs must reproduce transformers' own outputs.
/// </summary>
public sealed class SamTransformersParityTests
{
    private const double Tolerance = 1e-4;
    private static string Folder => Path.Combine(TestPaths.RepoRoot, "tests", "CycleQD.Onnx.Tests", "TestData", "sam-tiny-transformers");

    private static double RelativeError(float[] actual, float[] expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double num = 0, den = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            num += ((double)actual[i] - expected[i]) * ((double)actual[i] - expected[i]);
            den += (double)expected[i] * expected[i];
        }
        Assert.True(den > 0);
        double err = Math.Sqrt(num / den);
        TestContext.Current.TestOutputHelper?.WriteLine($"rel. error {err:E3} over {actual.Length} values");
        return err;
    }

    [Fact]
    public void EncodeImage_MatchesTransformers()
    {
        using var io = SafetensorsModel.Open(Path.Combine(Folder, "io.safetensors"));
        using var model = SamModel.Open(Path.Combine(Folder, "model"));
        double err = RelativeError(model.EncodeImage(io.ReadSingle("pixels")), io.ReadSingle("embedding"));
        Assert.True(err < Tolerance, $"image embedding rel. error {err:E3}");
    }

    [Theory]
    [InlineData("box", true)]
    [InlineData("box", false)]
    [InlineData("points", true)]
    [InlineData("points", false)]
    public void Decode_MatchesTransformers(string kind, bool multimask)
    {
        using var io = SafetensorsModel.Open(Path.Combine(Folder, "io.safetensors"));
        using var model = SamModel.Open(Path.Combine(Folder, "model"));
        // The prompts make.py passed (input_boxes, or input_points with input_labels).
        var prompt = kind == "box"
            ? new SamPrompt([20.5f, 31f, 97f, 110.25f], null, null)
            : new SamPrompt(null, [64f, 40f, 12.5f, 100f], [1, 0]);
        // Decode transformers' embedding, so the decoder is compared on its own.
        var output = model.Decode(io.ReadSingle("embedding"), prompt, multimask);
        string key = $"{kind}_{(multimask ? 1 : 0)}";
        double maskErr = RelativeError(output.LowResMasks, io.ReadSingle(key + "_masks"));
        double iouErr = RelativeError(output.IouPredictions, io.ReadSingle(key + "_iou"));
        Assert.True(maskErr < Tolerance, $"low-res masks rel. error {maskErr:E3}");
        Assert.True(iouErr < Tolerance, $"IoU rel. error {iouErr:E3}");
    }

    [Fact]
    public void TransformersCheckpoint_HasExactlyTheWriterLayout()
    {
        using var file = SafetensorsModel.Open(Path.Combine(Folder, "model"));
        var config = SamConfig.Load(Path.Combine(Folder, "model", "config.json"));
        var expected = SamWeightLayout.All(config).ToDictionary(s => s.Name, s => s.Shape);
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), file.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        foreach (var t in file.Tensors) Assert.Equal(expected[t.Name], t.Shape);
        Assert.Equal(TinySamWriter.Config() with { Vision = config.Vision }, config);
        Assert.Equal(TinySamWriter.Config().Vision with { GlobalAttnIndexes = [] }, config.Vision with { GlobalAttnIndexes = [] });
    }
}
