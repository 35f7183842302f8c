using System.Text.Json.Nodes;
using CycleQD.Core;
using CycleQD.Onnx.Sam;
using CycleQD.Segmentation.Imaging;
using CycleQD.Testing;
using SkiaSharp;

namespace CycleQD.Runs.Tests;

/// <summary>CycleQD over two tiny random SAM experts around a tiny random base, scored on two drawn datasets.</summary>
public class SamRunTests
{
    /// <summary>Draws <paramref name="count"/> image/mask pairs: filled ellipses (or rectangles) on noise.</summary>
    internal static void DrawPairs(string dir, int count, bool rectangles, int seed)
    {
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        Directory.CreateDirectory(Path.Combine(dir, "masks"));
        var rng = new Random(seed);
        const int w = 64, h = 48;
        for (int k = 0; k < count; k++)
        {
            double cx = w * (0.3 + 0.4 * rng.NextDouble()), cy = h * (0.3 + 0.4 * rng.NextDouble());
            double rx = w * (0.1 + 0.15 * rng.NextDouble()), ry = h * (0.1 + 0.15 * rng.NextDouble());
            var mask = new bool[w * h];
            using var bmp = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque));
            var px = bmp.GetPixelSpan();
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                {
                    double u = (x - cx) / rx, v = (y - cy) / ry;
                    bool inside = rectangles ? Math.Abs(u) <= 1 && Math.Abs(v) <= 1 : u * u + v * v <= 1;
                    mask[y * w + x] = inside;
                    int o = y * bmp.RowBytes + x * 4;
                    for (int c = 0; c < 3; c++) px[o + c] = inside ? (byte)(220 - 70 * c) : (byte)rng.Next(0, 100);
                    px[o + 3] = 255;
                }
            using (var data = bmp.Encode(SKEncodedImageFormat.Png, 100))
            using (var fs = File.Create(Path.Combine(dir, "images", $"img{k}.png")))
                data.SaveTo(fs);
            ImageFiles.WriteMaskPng(Path.Combine(dir, "masks", $"img{k}.png"), new BinaryMask(w, h, mask));
        }
    }

    /// <summary>Base (seed 21) and two experts (task vectors 22, 23) in dir/base, dir/expert-a, dir/expert-b; datasets in dir/ellipses, dir/boxes.</summary>
    internal static string Setup(TempDir dir, int generations, string metricB = "dice", string promptB = "point")
    {
        TinySamWriter.WriteBase(dir.File("base"), 21);
        TinySamWriter.WriteExpert(dir.File("expert-a"), 21, 22, relativeScale: 0.3);
        TinySamWriter.WriteExpert(dir.File("expert-b"), 21, 23, relativeScale: 0.3);
        DrawPairs(dir.File("ellipses"), 3, rectangles: false, seed: 1);
        DrawPairs(dir.File("boxes"), 3, rectangles: true, seed: 2);
        File.WriteAllLines(dir.File("boxes-split.txt"), ["img2", "img0"]);
        return Experiments.Write(dir, "sam.yaml", $"""
            name: sam-test
            seed: 4
            generations: {generations}
            tasks: [sam/ellipses, sam/boxes]
            model:
              base: base
              experts:
                sam/ellipses: expert-a
                sam/boxes: expert-b
            evaluation:
              sam:
                sam/ellipses: {"{"} data: ellipses, metric: iou, prompt: box {"}"}
                sam/boxes: {"{"} data: boxes, split: boxes-split.txt, metric: {metricB}, prompt: {promptB} {"}"}
            archive: {"{"} bins: 5 {"}"}
            mutation: {"{"} kind: svd {"}"}
            """);
    }

    [Fact]
    public void Run_TwoTinySamExperts_CompletesAndResumesIdentically()
    {
        using var dir = new TempDir();
        string exp = Setup(dir, 4);
        ResumeTests.RunTo(exp, dir.File("straight"), 4);
        ResumeTests.RunTo(exp, dir.File("split"), 2);
        ResumeTests.ResumeTo(dir.File("split"), 4);
        ResumeTests.AssertSameRun(dir.File("straight"), dir.File("split"), 4);

        // Both experts sit in both archives with scores in [0, 1]; their scores differ (different weights, different data).
        var archive = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.File("straight"), "archive.json")))!;
        var expertScores = new List<(double, double)>();
        foreach (var a in archive["archives"]!.AsArray())
            foreach (var cell in a!["cells"]!.AsArray())
            {
                var s = cell!["scores"]!;
                double e = s["sam/ellipses"]!.GetValue<double>(), b = s["sam/boxes"]!.GetValue<double>();
                Assert.InRange(e, 0.0, 1.0);
                Assert.InRange(b, 0.0, 1.0);
                if (cell["elite"]!.GetValue<string>().StartsWith("expert:", StringComparison.Ordinal)) expertScores.Add((e, b));
            }
        Assert.NotEmpty(expertScores);
        Assert.Contains("sam/ellipses", File.ReadAllText(Path.Combine(dir.File("straight"), "summary.md")));
    }

    [Fact]
    public void Config_SamTaskWithoutEvaluationEntry_NamesTheTask()
    {
        using var dir = new TempDir();
        string exp = Setup(dir, 1);
        File.WriteAllText(exp, File.ReadAllText(exp).Replace("    sam/boxes: {", "    # sam/boxes: {"));
        var e = Assert.Throws<ConfigurationException>(() => ExperimentConfig.Load(exp));
        Assert.Contains("'sam/boxes' has no entry under evaluation.sam", e.Message);
    }

    [Fact]
    public void Config_UnknownMetric_NamesKeyAndLine()
    {
        using var dir = new TempDir();
        string exp = Setup(dir, 1, metricB: "f2");
        var e = Assert.Throws<ConfigurationException>(() => ExperimentConfig.Load(exp));
        Assert.Contains("evaluation.sam.sam/boxes.metric", e.Message);
        Assert.Contains("line", e.Message);
        Assert.Contains("unknown segmentation metric 'f2'", e.Message);
    }

    [Fact]
    public void Config_MixedTaskFamilies_AreRejected()
    {
        using var dir = new TempDir();
        string exp = Setup(dir, 1);
        File.WriteAllText(exp, File.ReadAllText(exp).Replace("tasks: [sam/ellipses, sam/boxes]", "tasks: [sam/ellipses, tinyskills/code]")
            .Replace("sam/boxes: expert-b", "tinyskills/code: expert-b").Replace("    sam/boxes: {", "    # sam/boxes: {"));
        var e = Assert.Throws<ConfigurationException>(() => ExperimentConfig.Load(exp));
        Assert.Contains("'tinyskills/code' is a llama task, but sam/ellipses is a sam task; a run scores one model family", e.Message);
    }

    [Fact]
    public void Config_MissingDataFolder_NamesIt()
    {
        using var dir = new TempDir();
        string exp = Setup(dir, 1);
        Directory.Delete(dir.File("boxes"), recursive: true);
        var e = Assert.Throws<ConfigurationException>(() => ExperimentConfig.Load(exp));
        Assert.Contains(dir.File("boxes") + " not found", e.Message);
    }

    [Fact]
    public void Start_DatasetWithUnmatchedImage_NamesTheImage()
    {
        using var dir = new TempDir();
        string exp = Setup(dir, 1);
        File.Delete(Path.Combine(dir.File("ellipses"), "masks", "img1.png"));
        var e = Assert.Throws<InvalidDataException>(() => ResumeTests.RunTo(exp, dir.File("run"), 1));
        Assert.Contains("img1.png has no mask", e.Message);
    }
}

/// <summary>The shipped SAM example and its models.</summary>
public class SamTinyExampleTests
{
    [Fact]
    public void ShippedTinySamModels_AreWhatTheWriterProduces()
    {
        using var dir = new TempDir();
        TinySamWriter.WriteBase(dir.File("base"), 1);
        TinySamWriter.WriteExpert(dir.File("expert-a"), 1, 2, relativeScale: 0.3);
        TinySamWriter.WriteExpert(dir.File("expert-b"), 1, 3, relativeScale: 0.3);
        foreach (var m in new[] { "base", "expert-a", "expert-b" })
            foreach (var f in new[] { "config.json", "model.safetensors" })
                Assert.Equal(File.ReadAllBytes(Path.Combine(dir.File(m), f)), File.ReadAllBytes(Path.Combine(TestPaths.RepoRoot, "models", "sam-tiny", m, f)));
    }

    [Fact]
    public void Example_SamTiny_RunsOnTheKvasirPairs()
    {
        string kvasir = TestPaths.RequireSharedData("segmentation", "kvasir_seg");
        using var dir = new TempDir();
        // The example reads the data beside the main checkout; point it at wherever the shared data is.
        string examples = Path.Combine(TestPaths.RepoRoot, "examples");
        string text = File.ReadAllText(Path.Combine(examples, "sam-tiny.yaml"))
            .Replace("../../shared/data/segmentation/kvasir_seg", kvasir)
            .Replace("../models/", Path.Combine(TestPaths.RepoRoot, "models") + "/")
            .Replace("sam-tiny/kvasir-", Path.Combine(examples, "sam-tiny", "kvasir-"));
        string exp = Experiments.Write(dir, "sam-tiny.yaml", text);
        var c = ExperimentConfig.Load(exp);
        Assert.Equal(["sam/kvasir_a", "sam/kvasir_b"], c.Options.Tasks);
        Assert.Equal(Segmentation.Metrics.SegmentationMetric.Dice, c.Evaluation.Sam!["sam/kvasir_b"].Metric);
        ResumeTests.RunTo(exp, dir.File("run"), 2);
        Assert.Equal(2, ResumeTests.MetricsWithoutTiming(dir.File("run")).Length);
    }
}
