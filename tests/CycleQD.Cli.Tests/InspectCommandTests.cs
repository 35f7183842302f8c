using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

public class InspectCommandTests
{
    [Fact]
    public void Inspect_Stories260K_Lists47TensorsWithTiedHead()
    {
        var r = CliRunner.Run("inspect", TestPaths.Stories260K);
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("", r.Err);
        var tensorRows = r.Out.Split('\n').Where(l => l.StartsWith("model.", StringComparison.Ordinal)).ToList();
        Assert.Equal(47, tensorRows.Count);
        Assert.Contains(tensorRows, l => l.StartsWith("model.embed_tokens.weight") && l.Contains("[512, 64]") && l.Contains("F32"));
        Assert.Equal(5 * 9, tensorRows.Count(l => l.StartsWith("model.layers.")));
        Assert.Contains(tensorRows, l => l.StartsWith("model.norm.weight") && l.Contains("[64]"));
        Assert.Contains("tie_word_embeddings   yes", r.Out);
        Assert.Contains("total: 47 tensors (F32 47), 260,032 parameters", r.Out);
    }

    [Fact]
    public void Inspect_SamFolder_ShowsTheSamConfig_AndItsCountMatchesTheTensors()
    {
        var r = CliRunner.Run("inspect", Path.Combine(TestPaths.RepoRoot, "models", "sam-tiny", "base"));
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("model_type            sam", r.Out);
        Assert.Contains("image                 128×128, patch 16 (embedding grid 8×8)", r.Out);
        var count = System.Text.RegularExpressions.Regex.Match(r.Out, @"parameters \(config\)   ([\d,]+)").Groups[1].Value;
        Assert.NotEqual("", count);
        Assert.Contains($"F32 174), {count} parameters", r.Out);
        Assert.DoesNotContain("hidden_size", r.Out);
    }

    [Fact]
    public void Inspect_SharedStories260KHf_MatchesShippedCopy()
    {
        string shared = TestPaths.RequireSharedData("models", "stories260K-hf");
        var a = CliRunner.Run("inspect", shared);
        var b = CliRunner.Run("inspect", TestPaths.Stories260K);
        Assert.Equal(0, a.ExitCode);
        Assert.Equal(b.Out.Split('\n').Skip(1), a.Out.Split('\n').Skip(1)); // all but the path line
    }

    [Fact]
    public void Inspect_TruncatedWeights_OneErrorLineNamingFile_NonZeroExit()
    {
        using var dir = new TempDir();
        foreach (var f in Directory.GetFiles(TestPaths.Stories260K)) File.Copy(f, Path.Combine(dir.Path, Path.GetFileName(f)));
        string weights = Path.Combine(dir.Path, "model.safetensors");
        File.SetAttributes(weights, FileAttributes.Normal);
        using (var fs = new FileStream(weights, FileMode.Open)) fs.SetLength(fs.Length / 2);

        var r = CliRunner.Run("inspect", dir.Path);
        Assert.NotEqual(0, r.ExitCode);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(weights, lines[0]);
        Assert.DoesNotContain("   at ", r.Err);
    }

    [Fact]
    public void Inspect_Verbose_ShowsStackTrace()
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("inspect", dir.Path, "--verbose");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Contains("config.json", r.Err);
        Assert.Contains("   at ", r.Err);
    }

    [Fact]
    public void Inspect_SingleSafetensorsFile_ListsTensorsWithoutConfig()
    {
        var r = CliRunner.Run("inspect", Path.Combine(TestPaths.Stories260K, "model.safetensors"));
        Assert.Equal(0, r.ExitCode);
        Assert.DoesNotContain("model_type", r.Out);
        Assert.Contains("total: 47 tensors", r.Out);
    }

    [Fact]
    public void Inspect_MissingPath_OneLineError()
    {
        var r = CliRunner.Run("inspect", "/nonexistent/model");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Equal("error: /nonexistent/model: no such file or folder", r.Err.Trim());
    }
}
