using CycleQD.Cuda;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

public class DeviceOptionTests
{
    private const string Experiment = """
        name: device-test
        seed: 11
        generations: 2
        tasks: [a, b]
        model:
          synthetic: { layers: 1, rows: 8, cols: 6, dtype: f32, seed: 5 }
        archive: { bins: 4 }
        """;

    [Fact]
    public void Run_AutoWithoutGpu_PrintsOneNoticeAndRunsOnTheCpu()
    {
        var status = CudaDeviceProbe.Probe();
        if (status.Available) Assert.Skip("a GPU is present; this checks the fallback without one");
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment);
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--device", "auto");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        Assert.Equal($"notice: CUDA unavailable ({status.Reason}); using the CPU backend", r.Err.Trim());
        Assert.Contains("backend cpu", r.Out);
    }

    [Fact]
    public void Run_CudaWithoutGpu_OneErrorLineAndNoRunDirectory()
    {
        var status = CudaDeviceProbe.Probe();
        if (status.Available) Assert.Skip("a GPU is present; this checks the refusal without one");
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment);
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--device", "cuda");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Equal($"error: CUDA is unavailable: {status.Reason}; --device cuda cannot be honoured (use --device auto or cpu)", r.Err.Trim());
        Assert.False(Directory.Exists(dir.File("run")));
    }

    [Fact]
    public void Run_CpuDevice_NoNotice()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment);
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        Assert.Equal("", r.Err);
    }

    [Fact]
    public void Run_UnknownDevice_OneErrorLine()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment);
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--device", "tpu");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Equal("error: --device tpu: expected auto, cpu or cuda", r.Err.Trim());
        Assert.False(Directory.Exists(dir.File("run")));
    }

    [Fact]
    public void Resume_UnknownDevice_OneErrorLine()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment);
        Assert.Equal(0, CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--device", "cpu").ExitCode);
        var r = CliRunner.Run("resume", dir.File("run"), "--generations", "3", "--device", "gpu0");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Equal("error: --device gpu0: expected auto, cpu or cuda", r.Err.Trim());
    }
}
