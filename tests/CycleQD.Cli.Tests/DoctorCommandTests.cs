using CycleQD.Cuda;

namespace CycleQD.Cli.Tests;

public class DoctorCommandTests
{
    [Fact]
    public void Doctor_ExitsZero_AndReportsEverySection()
    {
        var r = CliRunner.Run("doctor");
        Assert.Equal(0, r.ExitCode);
        foreach (var key in new[] { "CPU", "SIMD", "OpenBLAS", "LAPACKE", "CUDA driver", "nvcc", "PTX", "ONNX Runtime", "ORT on CUDA" })
            Assert.Contains("  " + key, r.Out);
        // ./build.sh setup installs both; the CPU backend cannot work without them.
        Assert.Contains("OpenBLAS      found libopenblas.so.0", r.Out);
        Assert.Contains("LAPACKE       found liblapacke.so.3", r.Out);
        Assert.Matches(@"ONNX Runtime  1\.31\.\d+; providers compiled in: .*CPUExecutionProvider", r.Out);
        // The lanes line says what LlamaModel.Open picks for a small model on this machine.
        var (lanes, threads) = Onnx.Runtime.LlamaModel.LanePlan(Onnx.Runtime.InferenceDevice.Cpu, 0, 0, 0, Environment.ProcessorCount);
        Assert.Contains(lanes > 1 ? $"CPU lanes     {lanes} × {threads} thread" : "CPU lanes     1 (", r.Out);
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

    [Fact]
    public void OrtCudaStatus_NamesAMissingProviderLibrary_AndTheFolder()
    {
        using var dir = new CycleQD.Testing.TempDir();
        string status = Commands.Doctor.DoctorCommand.OrtCudaStatus(dir.Path);
        Assert.StartsWith("not ready: libonnxruntime_providers_cuda.so (not in " + dir.Path + ")", status);
        // The build output carries the provider library (the GPU package); only the CUDA libraries can be missing there.
        string here = Commands.Doctor.DoctorCommand.OrtCudaStatus(AppContext.BaseDirectory);
        Assert.DoesNotContain(Commands.Doctor.DoctorCommand.CudaProviderLibrary, here);
    }
}
