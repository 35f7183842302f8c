using System.Globalization;
using CycleQD.Onnx.Sam;
using CycleQD.Segmentation.Data;
using CycleQD.Segmentation.Metrics;
using CycleQD.Segmentation.Sam;
using CycleQD.Testing;

namespace CycleQD.Segmentation.Tests;

/// <summary>The whole evaluation path (decode, prompts, ONNX encoder/decoder, post-processing, metrics) on the five Kvasir-SEG pairs with a tiny random SAM.</summary>
public class KvasirTinySamTests
{
    [Theory]
    [InlineData("box")]
    [InlineData("point")]
    public async Task KvasirPairs_TinyRandomSam_EvaluatesDeterministically(string prompt)
    {
        string data = TestPaths.RequireSharedData("segmentation", "kvasir_seg");
        using var dir = new TempDir();
        TinySamWriter.WriteBase(dir.File("base"), seed: 11);
        TinySamWriter.WriteExpert(dir.File("expert"), baseSeed: 11, taskSeed: 12, relativeScale: 0.5);
        var options = new SamTaskOptions
        {
            Name = "sam/kvasir", Data = new SegmentationDatasetOptions { DataDir = data }, Prompt = GroundTruthPrompts.Parse(prompt),
        };
        var bench = new SamBenchmark(options);
        var ct = TestContext.Current.CancellationToken;

        using var model = SamModel.Open(dir.File("base"));
        var first = await bench.EvaluateAsync(model, null, ct);
        var again = await bench.EvaluateAsync(model, null, ct);
        using var expert = SamModel.Open(dir.File("expert"));
        var other = await bench.EvaluateAsync(expert, null, ct);

        Assert.Equal(5, first.Samples.Count);
        Assert.Equal(first.Metrics, again.Metrics);
        Assert.Equal(first.Samples.Select(s => s.Reason), again.Samples.Select(s => s.Reason));
        Assert.NotEqual(first.Samples.Select(s => s.Reason), other.Samples.Select(s => s.Reason)); // the weights reach the masks
        Assert.Equal(first.Metrics["iou"], first.Score);
        foreach (var (name, v) in first.Metrics) Assert.InRange(v, 0.0, 1.0);
        // Per-image lines average to the reported means.
        foreach (var m in SegmentationMetricNames.All)
        {
            double mean = first.Samples.Average(s => double.Parse(s.Reason.Split(' ').Single(p => p.StartsWith(m.Name() + "=", StringComparison.Ordinal)).Split('=')[1], CultureInfo.InvariantCulture));
            Assert.Equal(first.Metrics[m.Name()], mean, 1e-4); // the lines carry 4 decimals
        }
        TestContext.Current.SendDiagnosticMessage($"kvasir tiny SAM ({prompt}): " + string.Join(", ", first.Metrics.Select(kv => $"{kv.Key} {kv.Value:F4}")));
    }
}
