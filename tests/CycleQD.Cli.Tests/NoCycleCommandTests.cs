using System.Text.Json.Nodes;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

/// <summary>run, show and export on a run without the cycle (archive.cycle: false): its one archive is called "mean".</summary>
public sealed class NoCycleCommandTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void RunShowExport_WithoutTheCycle_NameTheMeanArchive()
    {
        string models = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        File.WriteAllText(_dir.File("exp.yaml"), $"""
            name: no-cycle
            seed: 4
            generations: 4
            tasks: [tinyskills/code, tinyskills/db, tinyskills/os]
            model:
              base: {models}/base
              experts: {"{"} tinyskills/code: {models}/expert-code, tinyskills/db: {models}/expert-db, tinyskills/os: {models}/expert-os {"}"}
            evaluation: {"{"} split: valid, limit: 20, tinyskills: {models} {"}"}
            archive: {"{"} bins: 15, cycle: false {"}"}
            final_merge: {"{"} enabled: false {"}"}
            """);
        var dry = CliRunner.Run("run", _dir.File("exp.yaml"), "--dry-run");
        Assert.True(dry.ExitCode == 0, dry.Err + dry.Out);
        Assert.Contains("archives: one (without the cycle), quality = mean of the 3 tasks, 3,375 cells (15 bins on 3 behaviour axes)", dry.Out);
        string runDir = _dir.File("run");
        var r = CliRunner.Run("run", _dir.File("exp.yaml"), "--out", runDir, "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        Assert.Contains("archive mean: 3 expert elite(s)", r.Out);
        Assert.Contains("quality mean", r.Out);
        Assert.Contains("\nmean ", r.Out);      // the archive summary's row

        var show = CliRunner.Run("show", runDir, "--task", "mean", "--json");
        Assert.True(show.ExitCode == 0, show.Err);
        var rows = JsonNode.Parse(show.Out)!.AsArray();
        Assert.NotEmpty(rows);
        foreach (var row in rows)
        {
            Assert.Equal("mean", row!["archive"]!.GetValue<string>());
            Assert.Equal(["tinyskills/code", "tinyskills/db", "tinyskills/os"], row["bc"]!.AsArray().Select(b => b!.GetValue<string>()));
            double mean = row["scores"]!.AsObject().Average(kv => kv.Value!.GetValue<double>());
            Assert.Equal(mean, row["quality"]!.GetValue<double>(), 12);
        }
        var wrong = CliRunner.Run("show", runDir, "--task", "tinyskills/code");
        Assert.NotEqual(0, wrong.ExitCode);
        Assert.Contains("ran without the cycle", wrong.Err);

        var export = CliRunner.Run("export", runDir, "--task", "mean", "--out", _dir.File("best"));
        Assert.True(export.ExitCode == 0, export.Err + export.Out);
        Assert.NotEmpty(Directory.GetFiles(_dir.File("best"), "*.safetensors"));
        Assert.True(File.Exists(_dir.File("best/config.json")));
        var bad = CliRunner.Run("export", runDir, "--task", "tinyskills/db", "--out", _dir.File("other"));
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("its archives: mean (it ran without the cycle", bad.Err);
    }
}
