using CycleQD.Testing;
using CycleQD.Onnx.Sam;
using CycleQD.Segmentation.Data;
using CycleQD.Segmentation.Metrics;
using CycleQD.Segmentation.Sam;

namespace CycleQD.Segmentation.Tests;

public class SamBenchmarkTests
{
    /// <summary>
    /// A predictor whose masks are exactly its prompt: the box filled (or, for a point, a 3×3 square around it),
    /// at LowResSize = ImageSize so that post-processing is the identity for images whose longest side is ImageSize.
    /// Point prompts get three masks; only the one with the highest predicted IoU is the square.
    /// </summary>
    private sealed class PromptEchoPredictor(int imageSize) : ISamPredictor
    {
        public int ImageSize => imageSize;
        public List<SamPrompt> Prompts { get; } = [];
        public int Encoded { get; private set; }

        public float[] EncodeImage(float[] pixels)
        {
            Assert.Equal(3 * imageSize * imageSize, pixels.Length);
            Encoded++;
            return [1f];
        }

        public SamMaskOutput Decode(float[] imageEmbedding, SamPrompt prompt, bool multimask)
        {
            Prompts.Add(prompt);
            int s = imageSize;
            var m = new float[s * s];
            float x0, y0, x1, y1;
            if (prompt.Box is { } b) (x0, y0, x1, y1) = (b[0], b[1], b[2], b[3]);
            else (x0, y0, x1, y1) = (prompt.Points![0] - 1, prompt.Points[1] - 1, prompt.Points[0] + 1, prompt.Points[1] + 1);
            for (int y = 0; y < s; y++)
                for (int x = 0; x < s; x++) m[y * s + x] = x >= x0 && x <= x1 && y >= y0 && y <= y1 ? 5f : -5f;
            if (!multimask) return new SamMaskOutput(m, [0.5f], 1, s);
            var three = new float[3 * s * s];
            three.AsSpan().Fill(-5f);
            m.CopyTo(three, s * s);
            return new SamMaskOutput(three, [0.1f, 0.9f, 0.5f], 3, s);
        }

        public void Dispose() { }
    }

    [Fact]
    public async Task BoxPrompts_EchoedBox_ScoresTheBoxAgainstTheMask()
    {
        using var dir = new TempDir();
        SyntheticPairs.Write(dir.Path, 3, width: 40, height: 30);
        var bench = new SamBenchmark(new SamTaskOptions { Name = "sam/synthetic", Data = new SegmentationDatasetOptions { DataDir = dir.Path } });
        using var model = new PromptEchoPredictor(40);
        var report = await bench.EvaluateAsync(model, null, TestContext.Current.CancellationToken);
        Assert.Equal(3, model.Encoded);

        // Independent expectation: each prediction is the filled bounding box of its mask.
        var ious = new List<double>();
        for (int i = 0; i < 3; i++)
        {
            var (_, mask) = bench.Dataset.Load(i);
            var box = GroundTruthPrompts.BoundingBox(mask);
            Assert.Equal(box, model.Prompts[i].Box); // 40 → 40: the resize is the identity
            var pred = new float[mask.Pixels.Length];
            for (int y = 0; y < mask.Height; y++)
                for (int x = 0; x < mask.Width; x++) pred[y * mask.Width + x] = x >= box[0] && x <= box[2] && y >= box[1] && y <= box[3] ? 1 : 0;
            ious.Add(Overlap.Iou(pred, mask.Pixels, mask.Width, mask.Height));
        }
        Assert.Equal(ious.Average(), report.Score, 12);
        Assert.Equal(ious.Average(), report.Metrics["iou"], 12);
        Assert.InRange(report.Score, 0.6, 0.9); // an ellipse fills about π/4 of its box
        Assert.Equal(6, report.Metrics.Count);
        Assert.Equal(["s0", "s1", "s2"], report.Samples.Select(s => s.Id));
        Assert.StartsWith("box [", report.Samples[0].Prompt);
    }

    [Fact]
    public async Task PointPrompts_KeepTheMaskWithTheHighestPredictedIou()
    {
        using var dir = new TempDir();
        SyntheticPairs.Write(dir.Path, 2, width: 40, height: 30);
        var bench = new SamBenchmark(new SamTaskOptions
        {
            Name = "sam/synthetic", Data = new SegmentationDatasetOptions { DataDir = dir.Path }, Prompt = SamPromptKind.Point, Metric = SegmentationMetric.Dice,
        });
        using var model = new PromptEchoPredictor(40);
        var report = await bench.EvaluateAsync(model, null, TestContext.Current.CancellationToken);
        Assert.All(model.Prompts, p => Assert.Equal([1], p.PointLabels!));
        // The chosen mask is the 3×3 square (9 pixels inside the ellipse); an empty mask would score Dice 0.
        var (_, mask) = bench.Dataset.Load(0);
        int fg = mask.ForegroundCount;
        Assert.Equal(2.0 * 9 / (9 + fg), report.Samples.Count == 2 ? double.Parse(report.Samples[0].Reason.Split(' ')[1].Split('=')[1], System.Globalization.CultureInfo.InvariantCulture) : 0, 4);
        Assert.Equal(report.Metrics["dice"], report.Score);
    }

    [Fact]
    public async Task ResizedInput_PromptsAreScaledToTheEncoderFrame()
    {
        using var dir = new TempDir();
        SyntheticPairs.Write(dir.Path, 1, width: 40, height: 30);
        var bench = new SamBenchmark(new SamTaskOptions { Name = "sam/synthetic", Data = new SegmentationDatasetOptions { DataDir = dir.Path } });
        using var model = new PromptEchoPredictor(80);
        var report = await bench.EvaluateAsync(model, null, TestContext.Current.CancellationToken);
        var (_, mask) = bench.Dataset.Load(0);
        var box = GroundTruthPrompts.BoundingBox(mask);
        Assert.Equal(box.Select(v => v * 2f), model.Prompts[0].Box!);
        Assert.InRange(report.Score, 0.5, 0.95);
    }

    [Fact]
    public async Task EmptyGroundTruth_NamesTheMask()
    {
        using var dir = new TempDir();
        SyntheticPairs.Write(dir.Path, 1);
        Imaging.ImageFiles.WriteMaskPng(Path.Combine(dir.Path, "masks", "s0.png"), new Imaging.BinaryMask(40, 30, new bool[1200]));
        var bench = new SamBenchmark(new SamTaskOptions { Name = "sam/synthetic", Data = new SegmentationDatasetOptions { DataDir = dir.Path } });
        using var model = new PromptEchoPredictor(40);
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => bench.EvaluateAsync(model, null, TestContext.Current.CancellationToken));
        Assert.Contains("s0.png", e.Message);
    }
}
