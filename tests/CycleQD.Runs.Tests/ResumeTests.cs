using CycleQD.Testing;
using System.Text.Json.Nodes;

namespace CycleQD.Runs.Tests;

public class ResumeTests
{
    internal static void RunTo(string experiment, string outDir, int generations, ulong? seed = null)
    {
        using var s = RunSession.Start(experiment, outDir, generations, seed);
        s.InitializeAsync(default).GetAwaiter().GetResult();
        Assert.True(s.RunAsync(default).GetAwaiter().GetResult());
    }

    internal static void ResumeTo(string runDir, int generations)
    {
        using var s = RunSession.Resume(runDir, generations);
        s.InitializeAsync(default).GetAwaiter().GetResult();
        Assert.True(s.RunAsync(default).GetAwaiter().GetResult());
    }

    /// <summary>metrics.jsonl with every line's "timing" object removed.</summary>
    internal static string[] MetricsWithoutTiming(string runDir) =>
        File.ReadAllLines(Path.Combine(runDir, "metrics.jsonl")).Select(l =>
        {
            var o = JsonNode.Parse(l)!.AsObject();
            Assert.True(o.Remove("timing"));
            return o.ToJsonString();
        }).ToArray();

    internal static void AssertSameRun(string expectedDir, string actualDir, int generations)
    {
        Assert.Equal(File.ReadAllBytes(Path.Combine(expectedDir, "archive.json")), File.ReadAllBytes(Path.Combine(actualDir, "archive.json")));
        var a = MetricsWithoutTiming(expectedDir);
        var b = MetricsWithoutTiming(actualDir);
        Assert.Equal(generations, a.Length);
        Assert.Equal(a, b);
        Assert.Equal(Enumerable.Range(0, generations), b.Select(l => JsonNode.Parse(l)!["generation"]!.GetValue<int>()));
    }

    [Theory]
    [InlineData(1, "svd")]
    [InlineData(3, "svd")]
    [InlineData(1, "gaussian")]
    public void Resume_HalfwayThenToTarget_IdenticalToStraightRun(int inFlight, string mutation)
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic(inFlight: inFlight, mutation: mutation));
        RunTo(exp, dir.File("straight"), 24);
        RunTo(exp, dir.File("split"), 12);
        Assert.Equal(12, MetricsWithoutTiming(dir.File("split")).Length);
        ResumeTo(dir.File("split"), 24);
        AssertSameRun(dir.File("straight"), dir.File("split"), 24);
    }

    [Fact]
    public void Resume_AfterCrashBetweenMetricsAndCheckpoint_DropsTheUncommittedLine()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic());
        RunTo(exp, dir.File("straight"), 20);
        RunTo(exp, dir.File("crashed"), 10);
        // What a kill between the metrics append and the checkpoint rename leaves behind.
        File.AppendAllText(dir.File("crashed/metrics.jsonl"), "{\"generation\":10,\"partial\":true}\n{\"gener");
        File.WriteAllText(dir.File("crashed/state/.checkpoint.json.tmp-1-x"), "{");
        ResumeTo(dir.File("crashed"), 20);
        AssertSameRun(dir.File("straight"), dir.File("crashed"), 20);
    }

    [Fact]
    public void Run_EliteFolder_HoldsExactlyTheArchivedChildren()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic());
        RunTo(exp, dir.File("r"), 30);
        var archive = JsonNode.Parse(File.ReadAllText(dir.File("r/archive.json")))!;
        var referenced = archive["archives"]!.AsArray().SelectMany(a => a!["cells"]!.AsArray().Select(c => c!["elite"]!.GetValue<string>()))
            .Where(id => !id.StartsWith("expert:", StringComparison.Ordinal)).ToHashSet();
        var stored = Directory.GetFiles(dir.File("r/elites"), "*.safetensors").Select(f => Path.GetFileNameWithoutExtension(f)).ToHashSet();
        Assert.NotEmpty(referenced);
        Assert.Equal(referenced.Order(), stored.Order());
        var inserted = File.ReadAllLines(dir.File("r/metrics.jsonl")).Count(l => !l.Contains("\"child\":null", StringComparison.Ordinal));
        Assert.True(inserted >= stored.Count, "some archived children must have been replaced and deleted, or all kept");
        Assert.True(File.Exists(dir.File("r/summary.md")));
    }

    [Fact]
    public void Run_SameSeedTwice_SameArchive_DifferentSeed_Differs()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic());
        RunTo(exp, dir.File("x"), 15);
        RunTo(exp, dir.File("y"), 15);
        Assert.Equal(File.ReadAllBytes(dir.File("x/archive.json")), File.ReadAllBytes(dir.File("y/archive.json")));
        RunTo(exp, dir.File("z"), 15, seed: 4);
        Assert.NotEqual(File.ReadAllBytes(dir.File("x/archive.json")), File.ReadAllBytes(dir.File("z/archive.json")));
    }

    [Fact]
    public void Start_IntoExistingRun_SaysToResume()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic());
        RunTo(exp, dir.File("r"), 2);
        var e = Assert.Throws<RunDirectoryException>(() => RunSession.Start(exp, dir.File("r"), 4, null));
        Assert.Contains("already holds a run; continue it with: cycleqd resume", e.Message);
    }

    [Fact]
    public void Resume_TargetBelowDone_OneClearError()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic());
        RunTo(exp, dir.File("r"), 6);
        var e = Assert.Throws<Core.ConfigurationException>(() => RunSession.Resume(dir.File("r"), 3));
        Assert.Equal("--generations 3: the run has already done 6", e.Message);
    }
}

public class EliteMapPlotTests
{
    [Fact]
    public void Run_PlotsEvery5_WritesPngMapsAtThoseGenerations()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic() + "\nplots: { every: 5 }\n");
        ResumeTests.RunTo(exp, dir.File("r"), 10);
        foreach (int g in new[] { 5, 10 })
        {
            var png = File.ReadAllBytes(dir.File($"r/plots/elite_map_gen{g}.png"));
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
            Assert.True(png.Length > 5000);
        }
        Assert.True(File.Exists(dir.File("r/plots/progress.png")));
        Assert.Equal(3, Directory.GetFiles(dir.File("r/plots")).Length); // two maps and the progress plot
    }

    [Fact]
    public void Panels_ThreeBcs_OnePanelPerPairWithBestQuality()
    {
        var bins = Enumerable.Range(0, 4).Select(_ => new Core.Archives.BinSpec(0, 1, 3)).ToArray();
        var a = new Core.Archives.Archive(0, bins);
        var add = typeof(Core.Archives.Archive).GetMethod("TryInsert", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!;
        add.Invoke(a, [new Core.Archives.Elite("x", [0.5, 0.1, 0.9, 0.1], 0)]);
        add.Invoke(a, [new Core.Archives.Elite("y", [0.7, 0.1, 0.9, 0.9], 1)]);
        var panels = EliteMapPlot.Panels(a).ToList();
        Assert.Equal(3, panels.Count);
        var (x, y, data) = panels[0]; // BC 0 (task 1) across, BC 1 (task 2) up
        Assert.Equal((0, 1), (x, y));
        Assert.Equal(0.7, data[0, 0]);  // top row = highest bin of task 2; both elites there, best kept
        Assert.True(double.IsNaN(data[2, 0]));
    }
}
