using System.Globalization;
using System.Text.Json;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

public sealed class MergeCommandTests
{
    private static string Example(string name) => Path.Combine(TestPaths.RepoRoot, "examples", "merge", name);

    [Fact]
    public void ShippedTiesExample_ScoresThePublishedTiesAccuracies_AndGenerates()
    {
        string data = TestPaths.RequireSharedData();
        string results = TestPaths.RequireSharedData("models", "tinyskills", "instruct", "eval", "results.json");
        using var dir = new TempDir();
        string outDir = dir.File("ties");
        var r = CliRunner.Run("merge", Example("tinyskills-ties.yaml"), "--out", outDir);
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("", r.Err);
        Assert.Contains("\nties: merged 47 tensors (260,032 values) into " + outDir, r.Out);
        var progress = r.Out.Split('\n').Where(l => l.StartsWith("merging: ", StringComparison.Ordinal)).ToList();
        Assert.InRange(progress.Count, 2, 11);
        Assert.StartsWith("merging: 47/47 tensors, 100 % of the values", progress[^1]);

        // The reference evaluated its own TIES merge of the same models (model-wide top 20 %, lambda 1).
        using var published = JsonDocument.Parse(File.ReadAllText(results));
        var ties = published.RootElement.GetProperty("results").GetProperty("ties").GetProperty("test");
        foreach (string skill in new[] { "code", "db", "os" })
        {
            double expected = ties.GetProperty(skill).GetDouble();
            var e = CliRunner.Run("eval", "--model", outDir, "--task", "tinyskills/" + skill, "--split", "test", "--data", data, "--output", dir.File(skill + ".jsonl"));
            Assert.Equal(0, e.ExitCode);
            Assert.Contains($"score: {expected.ToString(CultureInfo.InvariantCulture)} ({(int)Math.Round(expected * 200)}/200)", e.Out);
        }

        var g = CliRunner.Run("generate", "--model", outDir, "--prompt", "dog ? cat 3 dog 5 bird 2 .", "--max-new-tokens", "4");
        Assert.Equal(0, g.ExitCode);
        Assert.Equal("", g.Err);
        Assert.NotEqual("", g.Out.Trim());
    }

    [Fact]
    public void MaxShardSize_SplitsTheWeights_AndTheFolderLoadsBack()
    {
        using var dir = new TempDir();
        string outDir = dir.File("ta");
        var r = CliRunner.Run("merge", Example("tinyskills-task-arithmetic.yaml"), "--out", outDir, "--max-shard-size", "400KB", "--no-hash");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("model.safetensors.index.json", r.Out);
        Assert.Equal(3, Directory.GetFiles(outDir, "model-*-of-00003.safetensors").Length);
        Assert.Contains("(not hashed)", File.ReadAllText(Path.Combine(outDir, "README.md")));
        var i = CliRunner.Run("inspect", outDir);
        Assert.Equal(0, i.ExitCode);
        Assert.Contains("260,032 parameters", i.Out);
    }

    [Theory]
    [InlineData("merge_method: ties\nbase_model: nowhere\nmodels:\n  - model: also-nowhere\n    parameters: {weight: 1}\n", "nowhere")]
    [InlineData("merge_method: ties\nbase_model: b\nmodels:\n  - model: e\nweights: 1\n", "line 5: weights: unknown setting")]
    [InlineData("merge_method: dare_linear\nbase_model: b\nmodels:\n  - model: e\nparameters: {weight: 1, trim_scope: model}\n", "line 5: parameters.trim_scope: does not apply to dare_linear")]
    [InlineData("merge_method: ties\nbase_model: b\nmodels:\n  - model: e\n", "line 4: models[0]: e: weight is required")]
    public void BadMergeFile_OneErrorLine(string yaml, string expected)
    {
        using var dir = new TempDir();
        string path = dir.File("m.yaml");
        File.WriteAllText(path, yaml);
        var r = CliRunner.Run("merge", path, "--out", dir.File("out"));
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(expected, lines[0]);
    }

    [Theory]
    [InlineData("tinyskills-dare-ties.yaml", "dare_ties", "| rescale | true")]
    [InlineData("tinyskills-dare-linear.yaml", "dare_linear", "| rescale | inverse_density")]
    public void ShippedDareExamples_Merge_AndTheCardSaysWhichRescale(string example, string method, string rescaleRow)
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("merge", Example(example), "--out", dir.File("out"), "--no-hash");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("", r.Err);
        Assert.Contains($"\n{method}: merged 47 tensors (260,032 values)", r.Out);
        Assert.Contains(rescaleRow, File.ReadAllText(dir.File("out/README.md")));
    }

    [Fact]
    public void TiesWithDensityKeepingNoEntryOfATensor_OneErrorLineNamingTheTensor()
    {
        using var dir = new TempDir();
        string models = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        string path = dir.File("m.yaml");
        File.WriteAllText(path, $"merge_method: ties\nbase_model: {models}/base\nmodels:\n  - model: {models}/expert-db\nparameters: {{weight: 1, density: 0.01}}\n");
        var r = CliRunner.Run("merge", path, "--out", dir.File("out"));
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains("keeps no entry of tensor 'model.layers.0.input_layernorm.weight'", lines[0]);
        Assert.False(Directory.Exists(dir.File("out")));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("lots")]
    [InlineData("-5MB")]
    public void BadMaxShardSize_IsRefused(string size)
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("merge", Example("tinyskills-ties.yaml"), "--out", dir.File("out"), "--max-shard-size", size);
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.StartsWith($"error: --max-shard-size: '{size}' is not a size", r.Err);
        Assert.False(Directory.Exists(dir.File("out")));
    }

    [Fact]
    public void Scores_AppearInTheModelCard()
    {
        using var dir = new TempDir();
        string scores = dir.File("scores.json");
        File.WriteAllText(scores, """{"tinyskills/db (test)": 0.455, "tinyskills/os (test)": 0.205}""");
        var r = CliRunner.Run("merge", Example("tinyskills-task-arithmetic.yaml"), "--out", dir.File("out"), "--scores", scores, "--no-hash");
        Assert.Equal(0, r.ExitCode);
        string card = File.ReadAllText(dir.File("out/README.md"));
        Assert.Contains("| tinyskills/db (test) | 0.455 |", card);
        Assert.Contains("| tinyskills/os (test) | 0.205 |", card);
    }
}
