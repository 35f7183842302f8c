using System.Text.Json.Nodes;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

/// <summary>
/// examples/sam-tiny.yaml (the shipped tiny SAM models on the shared Kvasir pairs) for three
/// generations, with each task's test split set to the other's images so the run ends with the
/// final merge; made once for the SAM export tests.
/// </summary>
public sealed class SamTinyRunFixture : IDisposable
{
    private readonly TempDir _dir = new();

    /// <summary>The run directory, or null when the shared Kvasir data is not here.</summary>
    public string? RunDir { get; }

    public SamTinyRunFixture()
    {
        string? shared = TestPaths.SharedData;
        string kvasir = shared is null ? "" : Path.Combine(shared, "segmentation", "kvasir_seg");
        if (!Directory.Exists(kvasir)) return;
        string examples = Path.Combine(TestPaths.RepoRoot, "examples");
        string splits = Path.Combine(examples, "sam-tiny", "kvasir-");
        string text = File.ReadAllText(Path.Combine(examples, "sam-tiny.yaml"))
            .Replace("../../shared/data/segmentation/kvasir_seg", kvasir)
            .Replace("../models/", Path.Combine(TestPaths.RepoRoot, "models") + "/")
            .Replace("split: sam-tiny/kvasir-a.txt", $"split: {splits}a.txt, test_split: {splits}b.txt".Replace(", ", "\n      "))
            .Replace("split: sam-tiny/kvasir-b.txt", $"split: {splits}b.txt, test_split: {splits}a.txt".Replace(", ", "\n      "))
            .Replace("generations: 30", "generations: 3");
        File.WriteAllText(_dir.File("sam-tiny.yaml"), text);
        RunDir = _dir.File("run");
        var r = CliRunner.Run("run", _dir.File("sam-tiny.yaml"), "--out", RunDir, "--device", "cpu");
        if (r.ExitCode != 0) throw new InvalidOperationException("the fixture run failed: " + r.Err + r.Out);
    }

    public void Dispose() => _dir.Dispose();
}

public sealed class SamExportCommandTests(SamTinyRunFixture run) : IClassFixture<SamTinyRunFixture>
{
    private string RunDir => run.RunDir ?? TestPaths.RequireSharedData("segmentation", "kvasir_seg", "no-run");

    private static void AssertSameTensors(string expected, string actual)
    {
        using var a = SafetensorsModel.Open(expected);
        using var b = SafetensorsModel.Open(actual);
        Assert.Equal(a.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal), b.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        foreach (var t in a.Tensors)
            Assert.True(a.GetBytes(t.Name).SequenceEqual(b.GetBytes(t.Name)), $"tensor {t.Name} differs");
    }

    /// <summary>The exported folder is a SamModel folder: SAM's config.json, no tokenizer, a card; it scores like the elite.</summary>
    [Fact]
    public void ExportBestElite_OfSamRun_WritesASamFolderThatEvalReads()
    {
        var archive = JsonNode.Parse(File.ReadAllText(Path.Combine(RunDir, "archive.json")))!;
        var a = archive["archives"]!.AsArray().Single(x => x!["task"]!.GetValue<string>() == "sam/kvasir_a")!;
        var best = a["cells"]!.AsArray().MaxBy(c => c!["quality"]!.GetValue<double>())!;
        string id = best["elite"]!.GetValue<string>();
        string weights = id.StartsWith("expert:", StringComparison.Ordinal)
            ? Path.Combine(TestPaths.RepoRoot, "models", "sam-tiny", id == "expert:sam/kvasir_a" ? "expert-a" : "expert-b")
            : Path.Combine(RunDir, "elites", id + ".safetensors");

        using var dir = new TempDir();
        string outDir = dir.File("elite");
        var r = CliRunner.Run("export", RunDir, "--out", outDir, "--task", "sam/kvasir_a");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("in the sam/kvasir_a archive", r.Out);
        AssertSameTensors(weights, outDir);
        Assert.Equal(["README.md", "config.json", "model.safetensors"], Directory.GetFiles(outDir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal("sam", JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")))!["model_type"]!.GetValue<string>());

        var i = CliRunner.Run("inspect", outDir);
        Assert.True(i.ExitCode == 0, i.Err);
        Assert.Contains("model_type            sam", i.Out);
    }

    [Fact]
    public void ExportFinal_OfSamRun_CopiesTheFinalMergeByteForByte()
    {
        Assert.True(File.Exists(Path.Combine(RunDir, "final", "model.safetensors")), "the run with test splits should have ended with the final merge");
        using var dir = new TempDir();
        var r = CliRunner.Run("export", RunDir, "--out", dir.File("final"), "--final");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.StartsWith("exported the final model to", r.Out);
        AssertSameTensors(Path.Combine(RunDir, "final", "model.safetensors"), dir.File("final"));
        Assert.True(File.Exists(dir.File("final/config.json")));
        Assert.False(File.Exists(dir.File("final/tokenizer.json")));
    }
}

/// <summary>A verb given the other family's model says which kind it got and which it needs.</summary>
public sealed class WrongModelKindTests
{
    private static readonly string SamBase = Path.Combine(TestPaths.RepoRoot, "models", "sam-tiny", "base");
    private static readonly string LlamaBase = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills", "base");

    [Fact]
    public void Generate_OnSamFolder_SaysItIsASamModelAndNeedsLlama()
    {
        var r = CliRunner.Run("generate", "--model", SamBase, "--prompt", "hi");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"error: {SamBase}/config.json: model_type \"sam\": this is a Segment Anything model (SamModel); generate needs a Llama-family language model (model_type llama or mistral)",
            r.Err.Trim());
    }

    [Fact]
    public void EvalTinySkills_OnSamFolder_SaysItIsASamModel()
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("eval", "--task", "tinyskills/code", "--model", SamBase, "--split", "valid", "--limit", "2",
            "--data", TestPaths.RepoRoot, "--output", dir.File("e.jsonl"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("model_type \"sam\": this is a Segment Anything model (SamModel); eval --task tinyskills/code needs a Llama-family language model", r.Err);
    }

    [Fact]
    public void EvalSam_OnLlamaFolder_SaysItIsALlamaModelAndNeedsSam()
    {
        string kvasir = TestPaths.RequireSharedData("segmentation", "kvasir_seg");
        using var dir = new TempDir();
        var r = CliRunner.Run("eval", "--task", "sam/kvasir", "--model", LlamaBase, "--data", kvasir, "--limit", "1", "--output", dir.File("e.jsonl"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("model_type \"llama\": this is a Llama-family language model; eval --task sam/kvasir needs a Segment Anything model (SamModel) (model_type sam)", r.Err);
    }
}
