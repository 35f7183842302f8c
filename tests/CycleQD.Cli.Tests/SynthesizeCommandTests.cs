using System.Text.Json.Nodes;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

public sealed class SynthesizeCommandTests
{
    [Fact]
    public void SynthesizedSet_RunsCycleQdOnTinySkillsPrompts()
    {
        using var dir = new TempDir();
        string set = dir.File("set");
        var s = CliRunner.Run("synthesize", "--shape", "tiny", "--experts", "3", "--out", set, "--threads", "2");
        Assert.True(s.ExitCode == 0, s.Err + s.Out);
        Assert.Contains("base + 3 expert(s)", s.Out);
        Assert.Contains("expert-3", s.Out);
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(set, "synthesis.json")))!;
        Assert.Equal("tiny", manifest["shape"]!.GetValue<string>());

        // The use synthesize is for: a whole CycleQD run on a machine without downloaded models.
        string models = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        File.WriteAllText(dir.File("exp.yaml"), $"""
            name: synthesized
            seed: 1
            generations: 2
            tasks: [tinyskills/code, tinyskills/db, tinyskills/os]
            model:
              base: {set}/base
              experts:
                tinyskills/code: {set}/expert-1
                tinyskills/db: {set}/expert-2
                tinyskills/os: {set}/expert-3
            evaluation: {"{"} split: valid, limit: 3, tinyskills: {models} {"}"}
            archive:
              bins: 15
              # Random weights score 0 everywhere: the paper's bounds from the experts' scores would be empty.
              bounds: {"{"} tinyskills/code: [0, 1], tinyskills/db: [0, 1], tinyskills/os: [0, 1] {"}"}
            final_merge: {"{"} enabled: false {"}"}
            """);
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        var state = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.File("run"), "archive.json")))!;
        Assert.Equal(3, state["archives"]!.AsArray().Count);
    }

    [Fact]
    public void BadValues_ExitWithOneLineNamingTheProblem()
    {
        using var dir = new TempDir();
        var shape = CliRunner.Run("synthesize", "--shape", "llama9", "--out", dir.File("a"));
        Assert.Equal(1, shape.ExitCode);
        Assert.Contains("--shape: 'llama9' is not a known shape", shape.Err);

        var dtype = CliRunner.Run("synthesize", "--shape", "tiny", "--dtype", "int8", "--out", dir.File("b"));
        Assert.Equal(1, dtype.ExitCode);
        Assert.Contains("--dtype", dtype.Err);

        var nothing = CliRunner.Run("synthesize", "--shape", "tiny", "--experts", "0", "--skip-base", "--out", dir.File("d"));
        Assert.Equal(1, nothing.ExitCode);
        Assert.Contains("--skip-base with --experts 0 writes nothing", nothing.Err);

        File.WriteAllText(dir.File("c.txt"), "x");
        var full = CliRunner.Run("synthesize", "--shape", "tiny", "--out", dir.Path);
        Assert.Equal(1, full.ExitCode);
        Assert.Contains("not empty", full.Err);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "base")));
    }
}
