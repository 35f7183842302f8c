using CycleQD.Core;
using CycleQD.Core.Compute;
using CycleQD.Cpu;
using CycleQD.Cuda;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

public class BackendSelectionTests
{
    private static readonly CudaDriverStatus NoDriver = new(false, "no NVIDIA driver (libcuda.so.1 not found)", null, []);
    private static readonly CudaDriverStatus OneGpu = new(true, null, "12.4", [new CudaDeviceInfo(0, "Test GPU", 80L << 30, "9.0", 132)]);
    private static readonly MutationOptions Svd = new();

    /// <summary>A backend that only records that it was opened.</summary>
    private sealed class FakeGpuBackend : IComputeBackend
    {
        public string Name => "cuda:0";
        public IWeightSet Upload(IHostTensorSource source) => throw new NotSupportedException();
        public void Download(IWeightSet set, int index, Span<byte> destination) => throw new NotSupportedException();
        public IWeightSet Merge(IWeightSet baseModel, IReadOnlyList<IWeightSet> parents, ReadOnlySpan<float> weights) => throw new NotSupportedException();
        public void MergeInto(IWeightSet destination, IWeightSet baseModel, IReadOnlyList<IWeightSet> parents, ReadOnlySpan<float> weights) => throw new NotSupportedException();
        public IWeightSet TaskVector(IWeightSet model, IWeightSet baseModel) => throw new NotSupportedException();
        public void MutateSvd(IWeightSet child, IWeightSet baseModel, MutationOptions options, ulong seed, uint generation) => throw new NotSupportedException();
        public void MutateSvdExpertBasis(IWeightSet child, IWeightSet baseModel, ExpertSvdBasis basis, MutationOptions options, ulong seed, uint generation) => throw new NotSupportedException();
        public void MutateGaussian(IWeightSet child, MutationOptions options, ulong seed, uint generation) => throw new NotSupportedException();
        public void Dispose() { }
    }

    [Theory]
    [InlineData("auto", ComputeDevice.Auto)]
    [InlineData("CPU", ComputeDevice.Cpu)]
    [InlineData(" cuda ", ComputeDevice.Cuda)]
    public void Parse_KnownNames_AreAccepted(string text, ComputeDevice expected) => Assert.Equal(expected, BackendSelection.Parse(text));

    [Fact]
    public void Parse_UnknownName_NamesTheOption()
    {
        var e = Assert.Throws<ConfigurationException>(() => BackendSelection.Parse("tpu"));
        Assert.Equal("--device tpu: expected auto, cpu or cuda", e.Message);
    }

    [Fact]
    public void Auto_NoDriver_FallsBackToCpuWithOneNotice()
    {
        var notices = new List<string>();
        bool opened = false;
        using var b = BackendSelection.Create(ComputeDevice.Auto, Svd, notices.Add, () => NoDriver, () => true, () => { opened = true; return new FakeGpuBackend(); });
        Assert.IsType<CpuComputeBackend>(b);
        Assert.False(opened);
        Assert.Equal(["notice: CUDA unavailable (no NVIDIA driver (libcuda.so.1 not found)); using the CPU backend"], notices);
    }

    [Fact]
    public void Auto_GpuPresent_OpensCudaWithoutNotice()
    {
        var notices = new List<string>();
        using var b = BackendSelection.Create(ComputeDevice.Auto, Svd, notices.Add, () => OneGpu, () => true, () => new FakeGpuBackend());
        Assert.IsType<FakeGpuBackend>(b);
        Assert.Empty(notices);
    }

    [Fact]
    public void Auto_NoEmbeddedKernels_FallsBackWithReason()
    {
        var notices = new List<string>();
        using var b = BackendSelection.Create(ComputeDevice.Auto, Svd, notices.Add, () => OneGpu, () => false, () => new FakeGpuBackend());
        Assert.IsType<CpuComputeBackend>(b);
        Assert.Equal(["notice: CUDA unavailable (this build has no CUDA kernels (nvcc was missing when it was built)); using the CPU backend"], notices);
    }

    [Fact]
    public void Auto_GaussianMutation_OpensTheGpu()
    {
        var notices = new List<string>();
        using var b = BackendSelection.Create(ComputeDevice.Auto, new MutationOptions(MutationKind.Gaussian, GaussianStd: 0.01), notices.Add,
            () => OneGpu, () => true, () => new FakeGpuBackend());
        Assert.IsType<FakeGpuBackend>(b);
        Assert.Empty(notices);
    }

    [Fact]
    public void UnknownMutationKind_IsRefusedForTheGpu()
    {
        Assert.Equal("mutation kind 99 is unknown to the CUDA backend",
            BackendSelection.CudaUnusableReason(new MutationOptions((MutationKind)99), OneGpu, kernelsEmbedded: true));
        Assert.Null(BackendSelection.CudaUnusableReason(new MutationOptions(MutationKind.Gaussian), OneGpu, kernelsEmbedded: true));
    }

    [Fact]
    public void Auto_OpeningTheGpuFails_FallsBackWithTheDriversReason()
    {
        var notices = new List<string>();
        using var b = BackendSelection.Create(ComputeDevice.Auto, Svd, notices.Add, () => OneGpu, () => true,
            () => throw new CudaUnavailableException("GPU 0 requested, the driver reports 0 ()"));
        Assert.IsType<CpuComputeBackend>(b);
        Assert.Equal(["notice: CUDA unavailable (GPU 0 requested, the driver reports 0 ()); using the CPU backend"], notices);
    }

    [Fact]
    public void Cuda_NoDriver_ThrowsWithReasonAndNoNotice()
    {
        var notices = new List<string>();
        var e = Assert.Throws<CudaUnavailableException>(() =>
            BackendSelection.Create(ComputeDevice.Cuda, Svd, notices.Add, () => NoDriver, () => true, () => new FakeGpuBackend()));
        Assert.Equal("CUDA is unavailable: no NVIDIA driver (libcuda.so.1 not found); --device cuda cannot be honoured (use --device auto or cpu)", e.Message);
        Assert.Empty(notices);
    }

    [Fact]
    public void Cpu_NeverProbesTheDriver()
    {
        using var b = BackendSelection.Create(ComputeDevice.Cpu, Svd, _ => Assert.Fail("no notice expected"),
            () => throw new InvalidOperationException("probed"), () => throw new InvalidOperationException("probed"), () => throw new InvalidOperationException("opened"));
        Assert.IsType<CpuComputeBackend>(b);
    }

    [Fact]
    public void Start_CudaWithoutGpu_FailsBeforeCreatingTheRunDirectory()
    {
        var status = CudaDeviceProbe.Probe();
        if (status.Available) Assert.Skip("a GPU is present; this checks the refusal without one");
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic(generations: 2));
        var e = Assert.Throws<CudaUnavailableException>(() => RunSession.Start(exp, dir.File("run"), null, null, ComputeDevice.Cuda));
        Assert.Contains(status.Reason!, e.Message);
        Assert.False(Directory.Exists(dir.File("run")));
    }

    /// <summary>
    /// A few generations of the synthetic problem on the GPU end with the CPU run's archive: the same
    /// cells filled, qualities within 1e-4 (the SVD mutation's float32 rounding differs between backends).
    /// </summary>
    [Fact]
    public async Task CudaRun_MatchesCpuRun_OnTheSyntheticProblem()
    {
        var status = CudaDeviceProbe.Probe();
        if (!status.Available) Assert.Skip("needs a GPU: " + status.Reason);
        if (PtxCatalog.List().Count == 0) Assert.Skip("no PTX embedded in this build (no nvcc at build time)");
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic(generations: 8));
        foreach (var (device, sub) in new[] { (ComputeDevice.Cpu, "cpu"), (ComputeDevice.Cuda, "cuda") })
        {
            using var s = RunSession.Start(exp, dir.File(sub), null, null, device);
            Assert.Equal(device == ComputeDevice.Cpu ? "cpu" : "cuda:0", s.BackendName);
            await s.InitializeAsync(TestContext.Current.CancellationToken);
            Assert.True(await s.RunAsync(TestContext.Current.CancellationToken));
        }
        var cpu = ArchiveCells(dir.File("cpu"));
        var gpu = ArchiveCells(dir.File("cuda"));
        Assert.Equal(cpu.Keys.Order(), gpu.Keys.Order());
        foreach (var (cell, q) in cpu) Assert.True(Math.Abs(q - gpu[cell]) <= 1e-4, $"{cell}: cpu {q}, cuda {gpu[cell]}");
    }

    /// <summary>(archive, cell) → quality from archive.json.</summary>
    private static Dictionary<string, double> ArchiveCells(string runDir)
    {
        var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(runDir, "archive.json")))!;
        var result = new Dictionary<string, double>();
        foreach (var a in root["archives"]!.AsArray())
            foreach (var c in a!["cells"]!.AsArray())
                result[$"{a["task"]}/{c!["cell"]!.ToJsonString()}"] = c["quality"]!.GetValue<double>();
        return result;
    }
}
