using System.Globalization;
using System.Text.Json.Nodes;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

/// <summary>A three-generation TinySkills run on the shipped models (20 valid prompts per skill), made once for the export tests.</summary>
public sealed class TinyRunFixture : IDisposable
{
    private readonly TempDir _dir = new();

    public string RunDir => _dir.File("run");

    public TinyRunFixture()
    {
        string models = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        File.WriteAllText(_dir.File("exp.yaml"), $"""
            name: tiny-export
            seed: 1
            generations: 3
            tasks: [tinyskills/code, tinyskills/db, tinyskills/os]
            model:
              base: {models}/base
              experts:
                tinyskills/code: {models}/expert-code
                tinyskills/db: {models}/expert-db
                tinyskills/os: {models}/expert-os
            evaluation: {"{"} split: valid, limit: 20, tinyskills: {models} {"}"}
            archive: {"{"} bins: 15 {"}"}
            final_merge: {"{"} enabled: false {"}"}
            """);
        var r = CliRunner.Run("run", _dir.File("exp.yaml"), "--out", RunDir, "--device", "cpu");
        if (r.ExitCode != 0) throw new InvalidOperationException("the fixture run failed: " + r.Err + r.Out);
    }

    public void Dispose() => _dir.Dispose();
}

public sealed class ExportCommandTests(TinyRunFixture run) : IClassFixture<TinyRunFixture>
{
    private static void AssertSameTensors(string expected, string actual)
    {
        using var a = SafetensorsModel.Open(expected);
        using var b = SafetensorsModel.Open(actual);
        Assert.Equal(a.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal), b.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        foreach (var t in a.Tensors)
        {
            Assert.Equal(t.DType, b.GetInfo(t.Name).DType);
            Assert.True(a.GetBytes(t.Name).SequenceEqual(b.GetBytes(t.Name)), $"tensor {t.Name} differs");
        }
    }

    /// <summary>The first cell holding a child of the search (not an expert), with its archive's task.</summary>
    private (string Task, JsonNode Cell) ChildCell()
    {
        var archive = JsonNode.Parse(File.ReadAllText(Path.Combine(run.RunDir, "archive.json")))!;
        foreach (var a in archive["archives"]!.AsArray())
            foreach (var c in a!["cells"]!.AsArray())
                if (!c!["elite"]!.GetValue<string>().StartsWith("expert:", StringComparison.Ordinal))
                    return (a["task"]!.GetValue<string>(), c);
        throw new InvalidOperationException("no child of the search reached an archive in three generations");
    }

    [Fact]
    public void ExportElite_CopiesItsWeights_AndLoadsBackWithItsRecordedScore()
    {
        var (task, cell) = ChildCell();
        string cellText = string.Join(",", cell["cell"]!.AsArray().Select(x => x!.GetValue<int>()));
        string id = cell["elite"]!.GetValue<string>();
        using var dir = new TempDir();
        string outDir = dir.File("elite");
        var r = CliRunner.Run("export", run.RunDir, "--out", outDir, "--task", task, "--cell", cellText);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.StartsWith($"exported elite {id} in the {task} archive, cell ({cellText.Replace(",", ", ")})", r.Out);
        AssertSameTensors(Path.Combine(run.RunDir, "elites", id + ".safetensors"), outDir);
        foreach (var f in new[] { "config.json", "tokenizer.model", "README.md" }) Assert.True(File.Exists(Path.Combine(outDir, f)), f);

        string card = File.ReadAllText(Path.Combine(outDir, "README.md"));
        Assert.Contains($"elite {id}", card);
        Assert.Contains("name: tiny-export", card); // the run's experiment
        foreach (var (t, v) in cell["scores"]!.AsObject())
            Assert.Contains($"| {t} | {v!.GetValue<double>().ToString("G6", CultureInfo.InvariantCulture)} |", card);

        // Loaded back by the ONNX generator, the export scores what the run recorded for the elite.
        double quality = cell["quality"]!.GetValue<double>();
        var e = CliRunner.Run("eval", "--model", outDir, "--task", task, "--split", "valid", "--limit", "20",
            "--data", TestPaths.RepoRoot, "--output", dir.File("eval.jsonl"));
        Assert.True(e.ExitCode == 0, e.Err);
        Assert.Contains($"score: {quality.ToString(CultureInfo.InvariantCulture)} ({(int)Math.Round(quality * 20)}/20)", e.Out);
        var g = CliRunner.Run("generate", "--model", outDir, "--prompt", "calc 3+4-2 =", "--max-new-tokens", "4");
        Assert.Equal(0, g.ExitCode);
        Assert.NotEqual("", g.Out.Trim());
    }

    [Fact]
    public void ExportBestElite_WithoutCell_TakesTheHighestQualityCell_Sharded()
    {
        var archive = JsonNode.Parse(File.ReadAllText(Path.Combine(run.RunDir, "archive.json")))!;
        var db = archive["archives"]!.AsArray().Single(a => a!["task"]!.GetValue<string>() == "tinyskills/db")!;
        var best = db["cells"]!.AsArray().MaxBy(c => c!["quality"]!.GetValue<double>())!;
        string id = best["elite"]!.GetValue<string>();
        string weights = id.StartsWith("expert:", StringComparison.Ordinal)
            ? Path.Combine(TestPaths.RepoRoot, "models", "tinyskills", "expert-" + id[(id.LastIndexOf('/') + 1)..])
            : Path.Combine(run.RunDir, "elites", id + ".safetensors");

        using var dir = new TempDir();
        var r = CliRunner.Run("export", run.RunDir, "--out", dir.File("best"), "--task", "tinyskills/db", "--max-shard-size", "300KB");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("model.safetensors.index.json", r.Out);
        Assert.Contains("in the tinyskills/db archive, cell (" + string.Join(", ", best["cell"]!.AsArray().Select(x => x!.GetValue<int>())) + "), its best elite", r.Out);
        AssertSameTensors(weights, dir.File("best"));
    }

    [Fact]
    public void ExportFinal_CopiesTheFinalModel_AndShowsFinalJson()
    {
        using var dir = new TempDir();
        // A copy of the run, with a final model as the final merge leaves it.
        string copy = dir.File("run");
        CopyTree(run.RunDir, copy);
        var (_, cell) = ChildCell();
        Directory.CreateDirectory(Path.Combine(copy, "final"));
        File.Copy(Path.Combine(copy, "elites", cell["elite"]!.GetValue<string>() + ".safetensors"), Path.Combine(copy, "final", "model.safetensors"));
        File.WriteAllText(Path.Combine(copy, "final", "final.json"), """{"method": "ties of the best elites", "scores": {"tinyskills/db": 0.61}}""");
        var r = CliRunner.Run("export", copy, "--out", dir.File("final-out"), "--final");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.StartsWith("exported the final model to", r.Out);
        AssertSameTensors(Path.Combine(copy, "final", "model.safetensors"), dir.File("final-out"));
        string card = File.ReadAllText(dir.File("final-out/README.md"));
        Assert.Contains("\"method\": \"ties of the best elites\"", card);
        Assert.Contains("\"tinyskills/db\": 0.61", card);
    }

    [Fact]
    public void ExportFinal_CardStartsWithTestTableAndWeights_JsonInAppendix_NoMachinePaths()
    {
        using var dir = new TempDir();
        string copy = dir.File("run");
        CopyTree(run.RunDir, copy);
        var (_, cell) = ChildCell();
        Directory.CreateDirectory(Path.Combine(copy, "final"));
        File.Copy(Path.Combine(copy, "elites", cell["elite"]!.GetValue<string>() + ".safetensors"), Path.Combine(copy, "final", "model.safetensors"));
        string basePath = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills", "base");
        File.WriteAllText(Path.Combine(copy, "final", "final.json"), $$$"""
            {"generations": 4, "base_model": "{{{basePath}}}", "search": {"split": "valid"},
             "elites": [{"id": "0123456789abcdef0123", "reason": "best of archive tinyskills/db", "weight": 0.8},
                        {"id": "expert:tinyskills/os", "reason": "best of archive tinyskills/os", "weight": 0.5}],
             "weights": [0.8, 0.5], "base_weight": -0.3, "test_scores": {"tinyskills/db": 0.61}}
            """);
        File.WriteAllText(Path.Combine(copy, "report.json"), """
            {"format": 1, "complete": true, "generations": 4, "tasks": ["tinyskills/code", "tinyskills/db", "tinyskills/os"],
             "rows": [{"key": "expert:tinyskills/db", "label": "expert db", "test": {"tinyskills/code": 0.0, "tinyskills/db": 1.0, "tinyskills/os": 0.1}, "test_average": 0.3666},
                      {"key": "final", "label": "CycleQD final model", "test": {"tinyskills/code": 0.2, "tinyskills/db": 0.9, "tinyskills/os": 0.5}, "test_average": 0.5333}]}
            """);
        var r = CliRunner.Run("export", copy, "--out", dir.File("final-out"), "--final");
        Assert.True(r.ExitCode == 0, r.Err);
        string card = File.ReadAllText(dir.File("final-out/README.md"));
        Assert.Contains("base_model: \"base\"", card);
        Assert.DoesNotContain(TestPaths.RepoRoot, card);
        Assert.DoesNotContain(dir.Path, card);
        int table = card.IndexOf("| expert db | 0.0 | 100.0 | 10.0 | 36.7 |", StringComparison.Ordinal);
        int final = card.IndexOf("| **this model** (CycleQD final model) | 20.0 | 90.0 | 50.0 | 53.3 |", StringComparison.Ordinal);
        int weights = card.IndexOf("| 0123456789ab | best of archive tinyskills/db | 0.8 |", StringComparison.Ordinal);
        int appendix = card.IndexOf("## Appendix: how it was made (final/final.json)", StringComparison.Ordinal);
        Assert.True(table > 0 && final > table && weights > final && appendix > weights, card);
        Assert.Contains("\"base_model\": \"base\"", card[appendix..]);
        Assert.Contains("1 − Σ wᵢ = -0.3", card);
        Assert.Contains("base: …/base", card);
        Assert.Contains("| expert os | best of archive tinyskills/os | 0.5 |", card);
    }

    private static void CopyTree(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        foreach (var d in Directory.GetDirectories(from)) CopyTree(d, Path.Combine(to, Path.GetFileName(d)));
    }

    [Theory]
    [InlineData("--final", null, "has no final model (final/model.safetensors); ")]
    [InlineData("--task", "tinyskills/chess", "--task tinyskills/chess: no such task in ")]
    [InlineData("--cell", "1,1", "--cell needs --task")]
    [InlineData(null, null, "choose the model: --task T [--cell i,j] for an elite, or --final")]
    public void BadSelection_OneErrorLine(string? option, string? value, string expected)
    {
        using var dir = new TempDir();
        var args = new List<string> { "export", run.RunDir, "--out", dir.File("out") };
        if (option != null) args.Add(option);
        if (value != null) args.Add(value);
        AssertOneError(CliRunner.Run([.. args]), expected);
        Assert.False(Directory.Exists(dir.File("out")));
    }

    [Theory]
    [InlineData("14,14", "--cell 14,14: that cell of the tinyskills/os archive is empty (occupied: ")]
    [InlineData("3", "--cell 3: the tinyskills/os archive has 2 behaviour characteristics (tinyskills/code, tinyskills/db); give 2 indices")]
    [InlineData("3;4", "--cell '3;4': expected comma-separated cell indices")]
    [InlineData("-1,2", "--cell '-1,2': expected comma-separated cell indices")]
    [InlineData("15,0", "--cell 15,0: index 15 is outside 0–14 (tinyskills/code has 15 bins)")]
    public void BadCell_OneErrorLine(string cell, string expected)
    {
        using var dir = new TempDir();
        AssertOneError(CliRunner.Run("export", run.RunDir, "--out", dir.File("out"), "--task", "tinyskills/os", "--cell", cell), expected);
    }

    [Fact]
    public void NotARunDirectory_OneErrorLine()
    {
        using var dir = new TempDir();
        AssertOneError(CliRunner.Run("export", dir.Path, "--out", dir.File("out"), "--final"), "not a run directory (no run.json)");
    }

    private static void AssertOneError(CliResult r, string expected)
    {
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(expected, lines[0]);
    }
}
