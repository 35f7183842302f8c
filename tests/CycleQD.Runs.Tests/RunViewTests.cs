using System.Text.Json.Nodes;
using CycleQD.Core.Archives;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

/// <summary>Reading a run back (the archives as rows, the progress series) and drawing it.</summary>
public class RunViewTests
{
    private static string SyntheticRun(TempDir dir, int generations)
    {
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic(generations));
        ResumeTests.RunTo(exp, dir.File("r"), generations);
        return dir.File("r");
    }

    [Fact]
    public void ArchiveListing_SyntheticRun_RowsMatchArchiveJson_WithParentsAndMarks()
    {
        using var dir = new TempDir();
        string runDir = SyntheticRun(dir, 12);
        using var run = RunDirectory.Open(runDir);
        var listing = ArchiveListing.Read(run);

        var archive = JsonNode.Parse(File.ReadAllText(run.ArchivePath))!;
        Assert.Equal(12, listing.Generations);
        Assert.Equal(["a", "b", "c"], listing.Tasks);
        Assert.Equal(archive["archives"]!.AsArray().Sum(a => a!["cells"]!.AsArray().Count), listing.Rows.Count);

        // Parents come from the metrics line that made the child.
        var parentsOf = File.ReadAllLines(run.MetricsPath).Select(l => JsonNode.Parse(l)!).Where(m => m["child"] is not null)
            .ToDictionary(m => m["child"]!.GetValue<string>(), m => m["parents"]!.AsArray().Select(p => p!.GetValue<string>()).ToArray());
        var children = listing.Rows.Where(r => !r.Marks.HasFlag(EliteMarks.Expert)).ToList();
        Assert.NotEmpty(children);
        foreach (var r in children) Assert.Equal(parentsOf[r.Id], r.Parents);
        foreach (var r in listing.Rows.Where(r => r.Marks.HasFlag(EliteMarks.Expert)))
        {
            Assert.StartsWith("expert:", r.Id);
            Assert.Equal(-1, r.Generation);
            Assert.Empty(r.Parents!);
        }

        // One best per archive, at its highest quality; the general elite has the highest mean of all rows.
        foreach (var g in listing.Rows.GroupBy(r => r.Archive))
        {
            var best = Assert.Single(g, r => r.Marks.HasFlag(EliteMarks.Best));
            Assert.Equal(g.Max(r => r.Quality), best.Quality);
            Assert.All(g, r => Assert.Equal(r.Scores[listing.Tasks.ToList().IndexOf(g.Key)], r.Quality));
        }
        var general = listing.Rows.Where(r => r.Marks.HasFlag(EliteMarks.General)).ToList();
        Assert.NotEmpty(general);
        Assert.Single(general.Select(r => r.Id).Distinct());
        Assert.Equal(listing.Rows.Max(r => r.MeanScore), general[0].MeanScore);
    }

    [Fact]
    public void ArchiveListing_MetricsLineBeingAppended_IsLeftOut_AndHeldRunIsReadable()
    {
        using var dir = new TempDir();
        string runDir = SyntheticRun(dir, 6);
        using var held = RunDirectoryLock.Acquire(runDir); // a search still running holds the lock
        using var run = RunDirectory.Open(runDir);
        var before = ArchiveListing.Read(run);
        File.AppendAllText(run.MetricsPath, "{\"generation\": 6, \"child\": \"abc\", \"par");
        var after = ArchiveListing.Read(run);
        Assert.Equal(before.Rows, after.Rows, (x, y) => x.Id == y.Id && (x.Parents ?? []).SequenceEqual(y.Parents ?? []));
        Assert.Equal(6, ProgressSeries.Read(run.MetricsPath, before.Tasks).Generations.Length);
    }

    [Fact]
    public void ArchiveListing_NoArchiveYet_SaysSo()
    {
        using var dir = new TempDir();
        string runDir = SyntheticRun(dir, 2);
        File.Delete(Path.Combine(runDir, "archive.json"));
        using var run = RunDirectory.Open(runDir);
        var e = Assert.Throws<RunDirectoryException>(() => ArchiveListing.Read(run));
        Assert.Equal($"{runDir}: no archive.json yet (the run has not finished scoring its experts)", e.Message);
    }

    [Fact]
    public void ProgressSeries_FollowsMetricsLines_PerArchive()
    {
        using var dir = new TempDir();
        string runDir = SyntheticRun(dir, 8);
        var lines = File.ReadAllLines(Path.Combine(runDir, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToArray();
        var s = ProgressSeries.Read(Path.Combine(runDir, "metrics.jsonl"), ["a", "b", "c"]);
        Assert.Equal(Enumerable.Range(1, 8).Select(g => (double)g), s.Generations);
        for (int t = 0; t < 3; t++)
        {
            string task = "abc"[t].ToString();
            Assert.Equal(lines.Select(l => l["qd_score"]![task]!.GetValue<double>()), s.QdScore[t]);
            Assert.Equal(lines.Select(l => l["coverage"]![task]!.GetValue<double>()), s.Coverage[t]);
            Assert.Equal(lines.Select(l => l["best"]![task]!.GetValue<double>()), s.Best[t]);
            // The best quality of an archive never falls.
            for (int i = 1; i < s.Best[t].Length; i++) Assert.True(s.Best[t][i] >= s.Best[t][i - 1]);
        }
    }

    [Fact]
    public void Run_WritesProgressPlot_AndSummaryLinksThePlots()
    {
        using var dir = new TempDir();
        string runDir = SyntheticRun(dir, 10);
        var png = File.ReadAllBytes(Path.Combine(runDir, "plots", "progress.png"));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        string summary = File.ReadAllText(Path.Combine(runDir, "summary.md"));
        Assert.Contains("![progress](plots/progress.png)", summary);
        Assert.Contains("![elite maps, generation 10](plots/elite_map_gen10.png)", summary);
    }

    [Fact]
    public void EliteMap_ColourRange_IsSharedOverArchives()
    {
        var add = typeof(Archive).GetMethod("TryInsert", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!;
        var a = new Archive(0, [new BinSpec(0, 1, 4), new BinSpec(0, 1, 4)]);
        var b = new Archive(1, [new BinSpec(0, 1, 4), new BinSpec(0, 1, 4)]);
        add.Invoke(a, [new Elite("x", [0.2, 0.9], 0)]);
        add.Invoke(b, [new Elite("y", [0.1, 0.7], 1)]);
        add.Invoke(b, [new Elite("z", [0.9, 0.4], 1)]);
        var r = EliteMapPlot.ColourRange([a, b]);
        Assert.Equal((0.2, 0.7), (r.Min, r.Max)); // a's quality is task 0, b's task 1
    }

    [Fact]
    public void EliteMap_ExpertCells_AreTheExpertsBins()
    {
        var add = typeof(Archive).GetMethod("TryInsert", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!;
        var a = new Archive(0, [new BinSpec(0, 1, 3), new BinSpec(0, 1, 4), new BinSpec(0, 1, 5)]);
        add.Invoke(a, [new Elite(EliteIds.Expert("b"), [0.5, 0.9, 0.1], -1)]);
        add.Invoke(a, [new Elite("child", [0.6, 0.1, 0.9], 3)]);
        var cells = EliteMapPlot.ExpertCells(a, 0, 1).ToList();
        Assert.Equal([(3, 0, "b")], cells); // BC 0 (task 1) = 0.9 → bin 3 of 4; BC 1 (task 2) = 0.1 → bin 0 of 5
    }

    [Fact]
    public void EliteMap_PanelTitles_NameTheAxesAProjectionTakesTheBestOver()
    {
        string[] tasks = ["a", "b", "c"];
        var perTask = new Archive(0, [new BinSpec(0, 1, 3), new BinSpec(0, 1, 3)]);
        Assert.Equal("archive a: 0 elites, gen 7", EliteMapPlot.PanelTitle(perTask, 0, 1, tasks, 7));
        var mean = Archive.Mean([new BinSpec(0, 1, 3), new BinSpec(0, 1, 3), new BinSpec(0, 1, 3)]);
        var titles = EliteMapPlot.Panels(mean).Select(p => EliteMapPlot.PanelTitle(mean, p.X, p.Y, tasks, 7)).ToList();
        Assert.Equal(["archive mean: 0 elites, gen 7; best over c", "archive mean: 0 elites, gen 7; best over b", "archive mean: 0 elites, gen 7; best over a"], titles);
    }
}
