using System.Text.Json.Nodes;
using CycleQD.Runs;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

/// <summary>A 15-generation synthetic run (seconds), made once for the show tests.</summary>
public sealed class SyntheticRunFixture : IDisposable
{
    private readonly TempDir _dir = new();

    public string RunDir => _dir.File("run");

    /// <summary>What `run` printed.</summary>
    public string RunOutput { get; }

    public SyntheticRunFixture()
    {
        File.WriteAllText(_dir.File("exp.yaml"), """
            name: show-test
            seed: 2
            generations: 15
            tasks: [a, b, c]
            model:
              synthetic: { layers: 2, rows: 24, cols: 16, dtype: bf16, seed: 5 }
            archive: { bins: 6 }
            mutation: { kind: svd, sigma: 0.001 }
            """);
        var r = CliRunner.Run("run", _dir.File("exp.yaml"), "--out", RunDir, "--device", "cpu");
        if (r.ExitCode != 0) throw new InvalidOperationException("the fixture run failed: " + r.Err + r.Out);
        RunOutput = r.Out;
    }

    public void Dispose() => _dir.Dispose();
}

public sealed class ShowCommandTests(SyntheticRunFixture run) : IClassFixture<SyntheticRunFixture>
{
    private JsonArray Cells(string task) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(run.RunDir, "archive.json")))!["archives"]!.AsArray()
            .Single(a => a!["task"]!.GetValue<string>() == task)!["cells"]!.AsArray();

    [Fact]
    public void Run_PrintsTheArchiveSummary_AtTheEnd()
    {
        foreach (string task in new[] { "a", "b", "c" })
        {
            var cells = Cells(task);
            string line = run.RunOutput.Split('\n').Single(l => l.StartsWith(task + " ", StringComparison.Ordinal));
            Assert.Contains($" {cells.Count} ", line);
            Assert.Contains(cells.Max(c => c!["quality"]!.GetValue<double>()).ToString("F4", System.Globalization.CultureInfo.InvariantCulture), line);
        }
        Assert.Contains("archive  elites  coverage  QD score", run.RunOutput);
    }

    [Fact]
    public void ShowJson_OneObjectPerCell_BestFirst_WithMarks()
    {
        var r = CliRunner.Run("show", run.RunDir, "--task", "b", "--json");
        Assert.True(r.ExitCode == 0, r.Err);
        var rows = JsonNode.Parse(r.Out)!.AsArray();
        var cells = Cells("b");
        Assert.Equal(cells.Count, rows.Count);
        Assert.All(rows, x => Assert.Equal("b", x!["archive"]!.GetValue<string>()));
        var qualities = rows.Select(x => x!["quality"]!.GetValue<double>()).ToArray();
        Assert.Equal(qualities.OrderByDescending(q => q), qualities);
        Assert.True(rows[0]!["best"]!.GetValue<bool>());
        Assert.Single(rows, x => x!["best"]!.GetValue<bool>());
        Assert.All(rows.Where(x => x!["expert"]!.GetValue<bool>()), x => Assert.StartsWith("expert:", x!["id"]!.GetValue<string>()));
        Assert.Equal(["a", "c"], rows[0]!["bc"]!.AsArray().Select(t => t!.GetValue<string>()));
    }

    [Fact]
    public void ShowCsv_SortByGeneration_NewestFirst_HeaderNamesEveryTask()
    {
        var r = CliRunner.Run("show", run.RunDir, "--sort", "generation", "--csv");
        Assert.True(r.ExitCode == 0, r.Err);
        var lines = r.Out.TrimEnd().Split('\n');
        Assert.Equal("archive,cell,quality,a,b,c,mean,generation,parents,id,marks", lines[0]);
        Assert.Equal(Cells("a").Count + Cells("b").Count + Cells("c").Count, lines.Length - 1);
        foreach (var g in lines.Skip(1).Select(l => l.Split(',')).GroupBy(f => f[0]))
        {
            var gens = g.Select(f => int.Parse(f[^4], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            Assert.Equal(gens.OrderByDescending(x => x), gens);
        }
        Assert.Single(lines.Skip(1).Select(l => l.Split(',')).Where(f => f[^1].Contains("general")).Select(f => f[^2]).Distinct());
    }

    [Fact]
    public void ShowTable_MarksBestAndExperts_WhileTheRunIsLocked()
    {
        using var held = RunDirectoryLock.Acquire(run.RunDir); // as while a search is running
        var r = CliRunner.Run("show", run.RunDir);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("archive a: ", r.Out);
        Assert.Contains("cell = bins of b, c", r.Out);
        Assert.Equal(3, r.Out.Split('\n').Count(l => l.StartsWith("best ", StringComparison.Ordinal))); // one row per archive (the legend reads "best:")
        Assert.Contains("expert:a", r.Out);
    }

    [Fact]
    public void Show_UnknownTaskOrSort_NamesTheOption()
    {
        var t = CliRunner.Run("show", run.RunDir, "--task", "zz");
        Assert.Equal(1, t.ExitCode);
        Assert.Contains("--task zz: no such task in", t.Err);
        var s = CliRunner.Run("show", run.RunDir, "--sort", "size");
        Assert.Equal(1, s.ExitCode);
        Assert.Contains("--sort size: sort by quality, generation or one of the run's tasks (a, b, c)", s.Err);
        var both = CliRunner.Run("show", run.RunDir, "--csv", "--json");
        Assert.Equal(1, both.ExitCode);
    }
}
