using CycleQD.Cuda;

namespace CycleQD.Cli.Tests;

public class DoctorCommandTests
{
    [Fact]
    public void Doctor_ExitsZero_AndReportsEverySection()
    {
        var r = CliRunner.Run("doctor");
        Assert.Equal(0, r.ExitCode);
        foreach (var key in new[] { "CPU", "SIMD", "OpenBLAS", "LAPACKE", "CUDA driver", "nvcc", "PTX", "ONNX Runtime" })
            Assert.Contains("  " + key, r.Out);
        // ./build.sh setup installs both; the CPU backend cannot work without them.
        Assert.Contains("OpenBLAS      found libopenblas.so.0", r.Out);
        Assert.Contains("LAPACKE       found liblapacke.so.3", r.Out);
        Assert.Matches(@"ONNX Runtime  1\.31\.\d+; providers compiled in: .*CPUExecutionProvider", r.Out);
    }

    [Fact]
    public void Doctor_GpuLineAgreesWithDriverProbe()
    {
        var status = CudaDeviceProbe.Probe();
        var r = CliRunner.Run("doctor");
        if (status.Available)
            Assert.Contains($"GPU 0  {status.Devices[0].Name}", r.Out);
        else
            Assert.Contains($"GPU           none: {status.Reason}; the CPU backend will be used", r.Out);
    }
}
