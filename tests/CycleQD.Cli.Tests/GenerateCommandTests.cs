using System.Text.Json;
using CycleQD.Onnx.Runtime;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

public sealed class GenerateCommandTests
{
    private static string FixtureText()
    {
        string path = TestPaths.RequireSharedData("models", "stories260K", "greedy_fixture.json");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return doc.RootElement.GetProperty("greedy_text").GetString()!;
    }

    [Fact]
    public void OnceUponATime_PrintsOnlyTheFixtureContinuation()
    {
        string fixture = FixtureText();
        var r = CliRunner.Run("generate", "--model", TestPaths.Stories260K, "--prompt", "Once upon a time", "--max-new-tokens", "50");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("", r.Err);
        string continuation = r.Out.TrimEnd('\n');
        Assert.StartsWith(", there was a little girl named Lily.", continuation);
        Assert.StartsWith("Once upon a time" + continuation, fixture);
        Assert.True(continuation.Length > 100);
    }

    [Fact]
    public void EmptyPrompt_StartsFromBosLikeTheFixture()
    {
        var r = CliRunner.Run("generate", "--model", TestPaths.Stories260K, "--prompt", "", "--max-new-tokens", "200");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(FixtureText() + "\n", r.Out);
    }

    [Fact]
    public void CudaWithoutLibraries_OneErrorNamingTheMissingLibrary()
    {
        if (LlamaSession.CudaProviderLibraries.All(l => System.Runtime.InteropServices.NativeLibrary.TryLoad(l, out _)))
            Assert.Skip("every CUDA provider library loads on this machine");
        var r = CliRunner.Run("generate", "--model", TestPaths.Stories260K, "--prompt", "x", "--device", "cuda");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Equal("", r.Out);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: --device cuda:", lines[0]);
        Assert.Contains(".so.", lines[0]);
    }

    [Fact]
    public void ChatWithoutTemplate_ErrorNamesFolder()
    {
        var r = CliRunner.Run("generate", "--model", TestPaths.Stories260K, "--prompt", "x", "--chat");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.StartsWith("error: --chat:", r.Err);
        Assert.Contains("stories260K", r.Err);
    }

    [Fact]
    public void Float16OnCpu_ReproducesTheFixtureText()
    {
        var r = CliRunner.Run("generate", "--model", TestPaths.Stories260K, "--prompt", "", "--max-new-tokens", "200", "--dtype", "float16");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(FixtureText() + "\n", r.Out);
    }

    [Fact]
    public void BFloat16OnCpu_IsAUsageError()
    {
        var r = CliRunner.Run("generate", "--model", TestPaths.Stories260K, "--prompt", "x", "--dtype", "bfloat16");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Contains("--dtype bfloat16 needs --device cuda", r.Err);
    }

    [Fact]
    public void UnknownDevice_IsAUsageError()
    {
        var r = CliRunner.Run("generate", "--model", TestPaths.Stories260K, "--prompt", "x", "--device", "tpu");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Contains("--device: 'tpu'", r.Err);
    }

    [Fact]
    public void Bench_ReportsTokensPerSecondAndBindVersusSession()
    {
        var r = CliRunner.Run("generate", "bench", "--model", TestPaths.Stories260K, "--batches", "1,3", "--new-tokens", "4", "--repeats", "1");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("tokens/s", r.Out);
        Assert.Contains("bind a weight set", r.Out);
        Assert.Equal(2, r.Out.Split('\n').Count(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^\s+[13]\s+\d+\s+\d+\s")));
    }
    [Theory]
    [InlineData("plain")]
    [InlineData("fused")]
    public void EitherGraph_ReproducesTheFixtureText(string graph)
    {
        var r = CliRunner.Run("generate", "--model", TestPaths.Stories260K, "--prompt", "", "--max-new-tokens", "200", "--graph", graph);
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(FixtureText() + "\n", r.Out);
    }

    [Fact]
    public void UnknownGraph_OrFusedFloat32OnCuda_IsAUsageError()
    {
        var r = CliRunner.Run("generate", "--model", TestPaths.Stories260K, "--prompt", "x", "--graph", "turbo");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Contains("--graph: 'turbo'", r.Err);
        var c = CliRunner.Run("generate", "--model", TestPaths.Stories260K, "--prompt", "x", "--graph", "fused", "--device", "cuda");
        Assert.Equal(CliApp.ExitBadInput, c.ExitCode);
        Assert.Contains("--graph plain", c.Err);
        Assert.Contains("--dtype bfloat16", c.Err);
    }

    [Fact]
    public void Check_FusedAgainstPlain_PassesOnStories260K_WithEveryStepListed()
    {
        var r = CliRunner.Run("generate", "check", "--model", TestPaths.Stories260K, "--steps", "5", "--batch", "3");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        Assert.Contains("3 prompts of ", r.Out);
        Assert.Equal(6, r.Out.Split('\n').Count(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^\s*(prompt|\d+)\s+\d\.\d\dE[-+]\d\d\s+3/3$")));
        Assert.Contains("tolerance 1E-04 for Float: PASS", r.Out);
    }

    [Fact]
    public void Check_Float32OnCuda_IsAUsageErrorNamingTheType()
    {
        var r = CliRunner.Run("generate", "check", "--model", TestPaths.Stories260K, "--device", "cuda");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Contains("add --dtype bfloat16", r.Err);
    }

    [Fact]
    public void Bench_NamesTheGraphItMeasured()
    {
        var r = CliRunner.Run("generate", "bench", "--model", TestPaths.Stories260K, "--graph", "plain", "--batches", "2", "--new-tokens", "4", "--repeats", "1");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("graph plain", r.Out);
    }

    [Fact]
    public void Bench_SaysItsLanes_AndLanesAreRefusedOnCuda()
    {
        var r = CliRunner.Run("generate", "bench", "--model", TestPaths.Stories260K, "--lanes", "3", "--batches", "6", "--new-tokens", "4", "--repeats", "1");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("per lane, 3 lanes", r.Out);
        var one = CliRunner.Run("generate", "bench", "--model", TestPaths.Stories260K, "--lanes", "1", "--threads", "1", "--batches", "2", "--new-tokens", "4", "--repeats", "1");
        Assert.Equal(0, one.ExitCode);
        Assert.Contains("threads 1, 1 lane", one.Out);
        var cuda = CliRunner.Run("generate", "bench", "--model", TestPaths.Stories260K, "--device", "cuda", "--dtype", "float16", "--lanes", "2");
        Assert.Equal(CliApp.ExitBadInput, cuda.ExitCode);
        Assert.Contains("--lanes", cuda.Err);
    }
}
