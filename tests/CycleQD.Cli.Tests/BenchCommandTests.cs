using CycleQD.Cli.Commands.Bench;
using CycleQD.Cuda;

namespace CycleQD.Cli.Tests;

public class BenchCommandTests
{
    [Fact]
    public void BenchKernels_WithoutGpu_ExitsNonZeroWithOneLineSayingWhy()
    {
        var status = CudaDeviceProbe.Probe();
        if (status.Available) Assert.Skip("a GPU is present: the no-GPU path cannot be observed here");
        var r = CliRunner.Run("bench", "kernels", "--check");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Equal($"error: CUDA is unavailable: {status.Reason}", r.Err.Trim());
        Assert.Single(r.Err.Trim().Split('\n'));
    }

    [Fact]
    public void BenchKernels_BadShape_NamesTheOptionAndValue()
    {
        var r = CliRunner.Run("bench", "kernels", "--shapes", "4096x4096,12by5");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--shapes: '12by5' is not a shape", r.Err);
    }

    [Fact]
    public void ParseShapes_Default_IsTheLlama3_8BShapes()
    {
        Assert.Equal([(4096, 4096), (1024, 4096), (14336, 4096), (4096, 14336), (128256, 4096)], BenchCommand.ParseShapes(null));
        Assert.Equal([(8, 16), (3, 5)], BenchCommand.ParseShapes("8x16, 3X5"));
    }
}
