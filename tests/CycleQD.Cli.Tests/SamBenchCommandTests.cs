using CycleQD.Onnx.Sam;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

public class SamBenchCommandTests
{
    [Fact]
    public void BenchSam_TinyModel_PrintsRatesAndSamVitBaseCounts()
    {
        var r = CliRunner.Run("bench", "sam", "--images", "1", "--prompts", "2", "--repeats", "1", "--threads", "1");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("encoder (images)", r.Out);
        Assert.Contains("decoder, box, multimask (prompts)", r.Out);
        Assert.Contains("binding another weight set", r.Out);
        var vitBase = SamCost.Of(SamCost.SamVitBase);
        Assert.Contains(vitBase.Parameters.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), r.Out);
        Assert.Equal(vitBase.Parameters, vitBase.EncoderParameters + vitBase.DecoderParameters + SamWeightLayout.Unused(SamCost.SamVitBase).Sum(s => s.Shape.Aggregate(1L, (a, b) => a * b)));
    }

    [Fact]
    public void BenchSam_ModelFolder_IsUsed()
    {
        using var dir = new TempDir();
        TinySamWriter.WriteBase(dir.Path, 3, TinySamWriter.Config(64));
        var r = CliRunner.Run("bench", "sam", "--model", dir.Path, "--images", "1", "--prompts", "1", "--repeats", "1");
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains(dir.Path, r.Out);
        Assert.Contains("image 64,", r.Out);
    }

    [Fact]
    public void BenchSam_BadArchitecture_NamesTheOption()
    {
        var r = CliRunner.Run("bench", "sam", "--architecture", "vit-h");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--architecture vit-h", r.Err);
    }

    [Fact]
    public void BenchSam_MissingTensor_IsOneErrorLine()
    {
        using var dir = new TempDir();
        TinySamWriter.WriteBase(dir.Path, 3);
        File.Delete(dir.File("model.safetensors"));
        var r = CliRunner.Run("bench", "sam", "--model", dir.Path);
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("error: ", r.Err);
        Assert.Single(r.Err.Trim().Split('\n'));
    }
}
