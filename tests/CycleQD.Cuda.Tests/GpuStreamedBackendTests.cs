using CycleQD.Core.Compute;
using CycleQD.Cpu;
using CycleQD.Cuda.Backend;
using CycleQD.Cuda.Streaming;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Tests;

/// <summary>
/// <see cref="WeightResidency.Streamed"/> against <see cref="WeightResidency.Resident"/> on the same GPU and
/// the same fresh random weights: every operation must give the same bytes. The staging chunk is 4 KiB, so
/// every weight is streamed in several chunks. Skipped, with the driver's reason, where there is no GPU.
/// </summary>
public sealed class GpuStreamedBackendTests : IDisposable
{
    private const long Chunk = 4096;
    private readonly CudaComputeBackend _resident;
    private readonly CudaComputeBackend _streamed;
    private readonly int _seed = Environment.TickCount;

    public GpuStreamedBackendTests()
    {
        var status = CudaDeviceProbe.Probe();
        if (!status.Available) Assert.Skip("needs a GPU: " + status.Reason);
        if (PtxCatalog.List().Count == 0) Assert.Skip("no PTX embedded in this build (no nvcc at build time)");
        _resident = CudaComputeBackend.Create();
        _streamed = CudaComputeBackend.Create(0, new CudaBackendOptions(WeightResidency.Streamed, StagingChunkBytes: Chunk));
    }

    public void Dispose()
    {
        _streamed?.Dispose();
        _resident?.Dispose();
    }

    /// <summary>Three 2-D weights (several chunks each) and three odd-length 1-D ones, fresh random values per test run.</summary>
    private InMemoryTensorSource Model(DType dtype, int salt, int rows = 70, int cols = 41)
    {
        var rnd = new Random(_seed * 31 + salt);
        var src = new InMemoryTensorSource();
        for (int l = 0; l < 3; l++)
        {
            src.Add($"layers.{l}.weight", dtype, [rows, cols], Enumerable.Range(0, rows * cols).Select(_ => (float)(rnd.NextDouble() * 2 - 1)).ToArray());
            src.Add($"layers.{l}.norm", dtype, [cols + 2 * l + 1], Enumerable.Range(0, cols + 2 * l + 1).Select(_ => (float)(rnd.NextDouble() * 2 - 1)).ToArray());
        }
        return src;
    }

    private static byte[][] Bytes(IComputeBackend backend, IWeightSet set) =>
        Enumerable.Range(0, set.Tensors.Count).Select(t =>
        {
            var b = new byte[set.Tensors[t].ByteLength];
            backend.Download(set, t, b);
            return b;
        }).ToArray();

    private void AssertSameBytes(IWeightSet resident, IWeightSet streamed)
    {
        var r = Bytes(_resident, resident);
        var s = Bytes(_streamed, streamed);
        for (int t = 0; t < r.Length; t++) Assert.True(r[t].AsSpan().SequenceEqual(s[t]), $"tensor {resident.Tensors[t].Name} differs (seed {_seed})");
    }

    /// <summary>A device set of the streamed backend holding other values (a merge of <paramref name="src"/> with itself is <paramref name="src"/>).</summary>
    private IWeightSet StreamedDeviceCopy(InMemoryTensorSource src)
    {
        using var host = _streamed.Upload(src);
        return _streamed.Merge(host, [host], [1f]);
    }

    [Fact]
    public void Upload_Streamed_KeepsTheSetInHostMemory_AndAllocatesNothingOnTheDevice()
    {
        var src = Model(DType.BF16, 1);
        long before = _streamed.DeviceBytesInUse;
        using var set = _streamed.Upload(src);
        Assert.IsType<CudaHostWeightSet>(set);
        Assert.Equal(WeightMemoryKind.Host, ((IWeightMemory)set).Kind);
        Assert.False(((CudaHostWeightSet)set).IsMapped);
        Assert.Equal(before, _streamed.DeviceBytesInUse);
        var back = Bytes(_streamed, set);
        for (int t = 0; t < back.Length; t++) Assert.Equal(src.GetBytes(set.Tensors[t].Name).ToArray(), back[t]);
    }

    [Theory]
    [InlineData(DType.F32, 1)]
    [InlineData(DType.F32, 2)]
    [InlineData(DType.F16, 2)]
    [InlineData(DType.BF16, 1)]
    [InlineData(DType.BF16, 2)]
    [InlineData(DType.BF16, 8)]
    public void MergeInto_Streamed_EqualsResident_BitForBit(DType dtype, int parents)
    {
        var baseSrc = Model(dtype, 10);
        var parentSrc = Enumerable.Range(0, parents).Select(p => Model(dtype, 20 + p)).ToArray();
        float[] w = Enumerable.Range(0, parents).Select(p => 0.25f + 0.5f * p).ToArray();
        using var rb = _resident.Upload(baseSrc);
        using var sb = _streamed.Upload(baseSrc);
        var rp = parentSrc.Select(_resident.Upload).ToArray();
        var sp = parentSrc.Select(_streamed.Upload).ToArray();
        try
        {
            using var rc = _resident.Merge(rb, rp, w);
            using var sc = StreamedDeviceCopy(Model(dtype, 99));
            _streamed.MergeInto(sc, sb, sp, w);
            AssertSameBytes(rc, sc);
        }
        finally
        {
            foreach (var s in rp.Concat(sp)) s.Dispose();
        }
    }

    [Fact]
    public void MergeInto_SomeInputsOnTheDevice_EqualsResident_BitForBit()
    {
        var baseSrc = Model(DType.BF16, 30);
        var p0 = Model(DType.BF16, 31);
        var p1 = Model(DType.BF16, 32);
        using var rb = _resident.Upload(baseSrc);
        using var r0 = _resident.Upload(p0);
        using var r1 = _resident.Upload(p1);
        using var rc = _resident.Merge(rb, [r0, r1], [0.7f, 0.3f]);
        using var sb = _streamed.Upload(baseSrc);
        using var s0 = StreamedDeviceCopy(p0);
        using var s1 = _streamed.Upload(p1);
        using var sc = StreamedDeviceCopy(Model(DType.BF16, 98));
        _streamed.MergeInto(sc, sb, [s0, s1], [0.7f, 0.3f]);
        AssertSameBytes(rc, sc);
        using var sbDevice = StreamedDeviceCopy(baseSrc);
        _streamed.MergeInto(sc, sbDevice, [s0, s1], [0.7f, 0.3f]);
        AssertSameBytes(rc, sc);
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    public void TaskVector_Streamed_EqualsResident_BitForBit(DType dtype)
    {
        var m = Model(dtype, 40);
        var b = Model(dtype, 41);
        using var rm = _resident.Upload(m);
        using var rb = _resident.Upload(b);
        using var sm = _streamed.Upload(m);
        using var sb = _streamed.Upload(b);
        using var rt = _resident.TaskVector(rm, rb);
        using var st = _streamed.TaskVector(sm, sb);
        Assert.IsType<CudaWeightSet>(st);
        AssertSameBytes(rt, st);
    }

    [Theory]
    [InlineData(DType.F32, 0)]
    [InlineData(DType.BF16, 5)]
    public void MutateSvd_WithAHostBase_EqualsResident_BitForBit(DType dtype, int rank)
    {
        var b = Model(dtype, 50);
        var c = Model(dtype, 51);
        var options = new MutationOptions(MutationKind.Svd, SvdScaleMax: 0.3, SvdRank: rank);
        using var rb = _resident.Upload(b);
        using var rc = _resident.Upload(c);
        using var sb = _streamed.Upload(b);
        using var sc = StreamedDeviceCopy(c);
        _resident.MutateSvd(rc, rb, options, seed: 77, generation: 3);
        _streamed.MutateSvd(sc, sb, options, seed: 77, generation: 3);
        AssertSameBytes(rc, sc);
    }

    [Fact]
    public void MutateSvdExpertBasis_WithAHostBase_EqualsResident_BitForBit()
    {
        using var cpu = new CpuComputeBackend();
        var b = Model(DType.BF16, 60);
        var e = Model(DType.BF16, 61);
        var c = Model(DType.BF16, 62);
        var options = new MutationOptions(MutationKind.Svd, SvdScaleMax: 0.3, SvdRank: 4, Basis: MutationBasis.Expert);
        using var cb = cpu.Upload(b);
        using var ce = cpu.Upload(e);
        var basis = CycleQD.Cpu.Linalg.ExpertSvdFactorization.Compute("t", cpu, ce, cb, options);
        using var rb = _resident.Upload(b);
        using var rc = _resident.Upload(c);
        using var sb = _streamed.Upload(b);
        using var sc = StreamedDeviceCopy(c);
        _resident.MutateSvdExpertBasis(rc, rb, basis, options, seed: 5, generation: 2);
        _streamed.MutateSvdExpertBasis(sc, sb, basis, options, seed: 5, generation: 2);
        AssertSameBytes(rc, sc);
    }

    [Fact]
    public void MutateGaussian_OnAStreamedBackendsChild_EqualsResident_BitForBit()
    {
        var c = Model(DType.BF16, 70);
        var options = new MutationOptions(MutationKind.Gaussian, GaussianStd: 0.05);
        using var rc = _resident.Upload(c);
        using var sc = StreamedDeviceCopy(c);
        _resident.MutateGaussian(rc, options, seed: 9, generation: 4);
        _streamed.MutateGaussian(sc, options, seed: 9, generation: 4);
        AssertSameBytes(rc, sc);
    }

    [Fact]
    public void StreamedMergeOfEightSets_PeakStaysWithinChildPlusStaging()
    {
        const int parents = 8;
        var baseSrc = Model(DType.F32, 80, rows: 300, cols: 129);
        using var sb = _streamed.Upload(baseSrc);
        var sp = Enumerable.Range(0, parents).Select(p => _streamed.Upload(Model(DType.F32, 81 + p, rows: 300, cols: 129))).ToArray();
        try
        {
            using var child = StreamedDeviceCopy(baseSrc);
            // The copy above allocated the staging of 2 lanes; a merge of 8 parents frees it and allocates 9 lanes.
            long childBytes = child.Tensors.Sum(t => t.ByteLength);
            _streamed.ResetPeakDeviceBytes();
            long inUse = _streamed.DeviceBytesInUse;
            _streamed.MergeInto(child, sb, sp, Enumerable.Repeat(1f, parents).ToArray());
            long staging = TensorStreamer.StagingBytes(1 + parents, Chunk);
            Assert.True(_streamed.PeakDeviceBytes <= childBytes + staging, $"peak {_streamed.PeakDeviceBytes} bytes over child {childBytes} + staging {staging}");
            Assert.Equal(childBytes + staging, _streamed.DeviceBytesInUse);
            Assert.True(inUse >= childBytes);
        }
        finally
        {
            foreach (var s in sp) s.Dispose();
        }
    }

    [Fact]
    public void DeviceBytesInUse_CountsAResidentUpload_AndItsRelease()
    {
        var src = Model(DType.F32, 95);
        long before = _resident.DeviceBytesInUse;
        var set = _resident.Upload(src);
        Assert.Equal(before + set.Tensors.Sum(t => t.ByteLength), _resident.DeviceBytesInUse);
        Assert.True(_resident.PeakDeviceBytes >= _resident.DeviceBytesInUse);
        set.Dispose();
        Assert.Equal(before, _resident.DeviceBytesInUse);
    }

    [Fact]
    public void MergeInto_AHostDestination_IsRejectedNamingIt()
    {
        var src = Model(DType.BF16, 90);
        using var host = _streamed.Upload(src);
        var e = Assert.Throws<ArgumentException>(() => _streamed.MergeInto(host, host, [host], [1f]));
        Assert.Contains("the merge's destination is a host weight set", e.Message);
    }
}
