using CycleQD.Cuda.Blas;
using CycleQD.Cuda.Checks;
using CycleQD.Cuda.Kernels;
using CycleQD.Cuda.Solver;
using CycleQD.Cuda.Svd;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Tests;

/// <summary>
/// The kernels on a real GPU against float64 references: fresh random inputs, outputs poisoned
/// (0xFF bytes = NaN) before every run, lengths with odd tails and unaligned pointers.
/// Skipped, with the driver's reason, where there is no GPU.
/// </summary>
public sealed class GpuKernelTests : IDisposable
{
    private readonly CudaContext _ctx;
    private readonly CudaStream _stream;
    private readonly CudaKernels _kernels;

    public GpuKernelTests()
    {
        var status = CudaDeviceProbe.Probe();
        if (!status.Available) Assert.Skip("needs a GPU: " + status.Reason);
        if (PtxCatalog.List().Count == 0) Assert.Skip("no PTX embedded in this build (no nvcc at build time)");
        _ctx = CudaContext.Create();
        _stream = CudaStream.Create(_ctx);
        _kernels = new CudaKernels(_ctx);
    }

    public void Dispose()
    {
        _stream?.Dispose();
        _ctx?.Dispose();
    }

    public static TheoryData<DType, int, int, int> MergeCases()
    {
        var d = new TheoryData<DType, int, int, int>();
        foreach (var t in new[] { DType.F32, DType.F16, DType.BF16 })
            foreach (int n in new[] { 1, 7, 8, 4099, 1 << 16 })
                foreach (int parents in new[] { 1, 2, 8 })
                    d.Add(t, n, parents, 0);
        d.Add(DType.BF16, 4099, 3, 1); // base one element past an aligned address: scalar path
        return d;
    }

    [Theory]
    [MemberData(nameof(MergeCases))]
    public void Merge_MatchesFloat64Reference(DType dtype, int n, int parents, int misalign)
    {
        int es = DTypes.SizeOf(dtype);
        var rnd = new Random(n * 31 + parents);
        float[] baseF = Random(rnd, n, -1, 1);
        var parentF = Enumerable.Range(0, parents).Select(_ => Random(rnd, n, -1, 1)).ToArray();
        double[] w = Enumerable.Range(0, parents).Select(_ => 0.5 + rnd.NextDouble()).ToArray();
        double sum = w.Sum();

        using var dBase = _ctx.Allocate<byte>((long)(n + 1) * es);
        var dParents = parentF.Select(_ => _ctx.Allocate<byte>((long)n * es)).ToArray();
        using var dOut = _ctx.Allocate<byte>((long)n * es);
        try
        {
            byte[] baseBytes = Encode(baseF, dtype);
            dBase.CopyFrom(baseBytes, misalign * es);
            for (int p = 0; p < parents; p++) dParents[p].CopyFrom(Encode(parentF[p], dtype));
            dOut.FillBytes(0xFF, _stream);
            _kernels.Merge(dtype, dBase.At(misalign * es), dParents.Select(b => b.Pointer).ToArray(), w, dOut.Pointer, n, _stream);
            _stream.Synchronize();
            float[] got = Decode(dOut.ToArray(), dtype);

            float[] b = Decode(baseBytes, dtype);
            var ps = parentF.Select(x => Decode(Encode(x, dtype), dtype)).ToArray();
            double err = CpuReference.RelativeError(n, i =>
            {
                double acc = b[i];
                for (int p = 0; p < parents; p++) acc += w[p] / sum * (ps[p][i] - b[i]);
                return acc;
            }, i => got[i]);
            Assert.True(err <= Tolerance(dtype), $"{dtype} n={n} parents={parents}: relative error {err:E2}");
        }
        finally
        {
            foreach (var d in dParents) d.Dispose();
        }
    }

    /// <summary>
    /// merge_group_* over tensors of many lengths (odd tails, one element, exact block multiples) equals merge_* run per
    /// tensor, bit for bit, including a tensor whose base is one element past an aligned address (scalar path).
    /// </summary>
    [Theory]
    [InlineData(DType.F32, 3)]
    [InlineData(DType.F16, 2)]
    [InlineData(DType.BF16, 8)]
    [InlineData(DType.BF16, 1)]
    public void MergeGroup_EqualsPerTensorMerge_BitForBit(DType dtype, int parents)
    {
        int es = DTypes.SizeOf(dtype);
        long[] sizes = [1, 7, 8, 1024, 2048, 2049, 4099, 1 << 16, 3];
        var rnd = new Random(parents * 7 + es);
        float[] coef = Enumerable.Range(0, parents).Select(_ => (float)(0.2 + rnd.NextDouble())).ToArray();
        var plan = MergeGroupPlan.Create(sizes.Select(n => (n, dtype)).ToArray());
        Assert.Single(plan.Groups);
        var owned = new List<DeviceBuffer<byte>>();
        DeviceBuffer<byte> Alloc(long bytes) { var b = _ctx.Allocate<byte>(bytes); owned.Add(b); return b; }
        try
        {
            var bases = sizes.Select(n => Alloc((n + 1) * es)).ToArray();
            var ps = sizes.Select(n => Enumerable.Range(0, parents).Select(_ => Alloc(n * es)).ToArray()).ToArray();
            var grouped = sizes.Select(n => Alloc(n * es)).ToArray();
            var single = sizes.Select(n => Alloc(n * es)).ToArray();
            for (int t = 0; t < sizes.Length; t++)
            {
                int n = (int)sizes[t];
                bases[t].CopyFrom(Encode(Random(rnd, n + 1, -1, 1), dtype));
                foreach (var p in ps[t]) p.CopyFrom(Encode(Random(rnd, n, -1, 1), dtype));
                grouped[t].FillBytes(0xFF, _stream);
                single[t].FillBytes(0xFF, _stream);
            }
            // Tensor 5's base starts one element in: no 16-byte vectors for it.
            ulong BaseOf(int t) => t == 5 ? bases[t].At(es) : bases[t].Pointer;
            DeviceBuffer<MergeSegment>? descriptors = null;
            _kernels.MergeGroups(plan, BaseOf, (t, p) => ps[t][p].Pointer, t => grouped[t].Pointer, coef, ref descriptors, _stream);
            for (int t = 0; t < sizes.Length; t++)
                _kernels.MergeCoefficients(dtype, BaseOf(t), ps[t].Select(p => p.Pointer).ToArray(), coef, single[t].Pointer, sizes[t], _stream);
            _stream.Synchronize();
            descriptors!.Dispose();
            for (int t = 0; t < sizes.Length; t++)
                Assert.True(grouped[t].ToArray().AsSpan().SequenceEqual(single[t].ToArray()), $"{dtype} tensor {t} ({sizes[t]} elements): grouped and per-tensor merges differ");
        }
        finally
        {
            foreach (var b in owned) b.Dispose();
        }
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void TaskVector_ThenApply_GivesThetaBack(DType dtype)
    {
        const int N = 10_007;
        var rnd = new Random(5);
        byte[] theta = Encode(Random(rnd, N, -1, 1), dtype), bas = Encode(Random(rnd, N, -1, 1), dtype);
        using var dTheta = _ctx.Allocate<byte>(theta.Length);
        using var dBase = _ctx.Allocate<byte>(bas.Length);
        using var dTau = _ctx.Allocate<float>(N);
        using var dBack = _ctx.Allocate<byte>(theta.Length);
        dTheta.CopyFrom(theta);
        dBase.CopyFrom(bas);
        dTau.FillBytes(0xFF, _stream);
        dBack.FillBytes(0xFF, _stream);
        _kernels.TaskVector(dtype, dTheta.Pointer, dBase.Pointer, dTau.Pointer, N, _stream);
        _kernels.ApplyTaskVector(dtype, dBase.Pointer, dTau.Pointer, dBack.Pointer, N, _stream);
        _stream.Synchronize();
        float[] t = Decode(theta, dtype), b = Decode(bas, dtype), tau = dTau.ToArray();
        Assert.True(CpuReference.RelativeError(N, i => (double)t[i] - b[i], i => tau[i]) <= 1e-7);
        // base + (theta - base) rounds back to theta for all but a few ties in the narrow types.
        float[] back = Decode(dBack.ToArray(), dtype);
        Assert.True(CpuReference.RelativeError(N, i => t[i], i => back[i]) <= Tolerance(dtype));
    }

    [Fact]
    public void ConvertBf16_IsBitIdenticalToDTypeConversion_IncludingNaNAndTails()
    {
        const int N = 4099;
        var f = Random(new Random(9), N, -100, 100);
        f[0] = float.NaN; f[1] = -float.NaN; f[2] = float.PositiveInfinity; f[3] = BitConverter.Int32BitsToSingle(0x7F800001); f[4] = 3.3895314e38f;
        using var dIn = _ctx.Allocate<float>(N);
        using var dOut = _ctx.Allocate<ushort>(N);
        using var dBack = _ctx.Allocate<float>(N);
        dIn.CopyFrom(f);
        dOut.FillBytes(0xAB, _stream);
        dBack.FillBytes(0xFF, _stream);
        _kernels.Convert(DType.F32, DType.BF16, dIn.Pointer, dOut.Pointer, N, _stream);
        _kernels.Convert(DType.BF16, DType.F32, dOut.Pointer, dBack.Pointer, N, _stream);
        _stream.Synchronize();
        var bits = dOut.ToArray();
        var back = dBack.ToArray();
        for (int i = 0; i < N; i++)
        {
            Assert.Equal(DTypeConversion.SingleToBF16(f[i]), bits[i]);
            Assert.Equal(BitConverter.SingleToInt32Bits(DTypeConversion.BF16ToSingle(bits[i])), BitConverter.SingleToInt32Bits(back[i]));
        }
    }

    [Fact]
    public void ConvertF16_MatchesHalfCast()
    {
        const int N = 1001;
        var f = Random(new Random(10), N, -70000, 70000);
        using var dIn = _ctx.Allocate<float>(N);
        using var dOut = _ctx.Allocate<ushort>(N);
        dIn.CopyFrom(f);
        dOut.FillBytes(0xFF, _stream);
        _kernels.Convert(DType.F32, DType.F16, dIn.Pointer, dOut.Pointer, N, _stream);
        _stream.Synchronize();
        var bits = dOut.ToArray();
        for (int i = 0; i < N; i++) Assert.Equal(BitConverter.HalfToUInt16Bits((Half)f[i]), bits[i]);
    }

    [Fact]
    public void Convert_UnsupportedPair_SaysWhich()
    {
        var e = Assert.Throws<NotSupportedException>(() => _kernels.Convert(DType.F16, DType.BF16, 0, 0, 1, _stream));
        Assert.Contains("F16 to BF16", e.Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(255)]
    [InlineData(4096)]
    public void Rescale_MatchesTheCpuPhiloxDraws(int k)
    {
        var s = Random(new Random(k), k, 0, 10);
        using var dS = _ctx.Allocate<float>(k);
        using var dDelta = _ctx.Allocate<float>(k);
        dS.CopyFrom(s);
        dDelta.FillBytes(0xFF, _stream);
        _kernels.RescaleSingularValues(dS.Pointer, dDelta.Pointer, k, 0xDEADBEEFCAFEul, 13, 400, 0.3f, _stream);
        _stream.Synchronize();
        var (refS, refD) = CpuReference.Rescale(s, 0xDEADBEEFCAFEul, 13, 400, 0.3f);
        var gotS = dS.ToArray();
        var gotD = dDelta.ToArray();
        // float32 products against float64 ones: a few ulps.
        Assert.True(CpuReference.RelativeError(k, i => refS[i], i => gotS[i]) <= 2e-7);
        Assert.True(CpuReference.RelativeError(k, i => refD[i], i => gotD[i]) <= 2e-7);
    }

    [Theory]
    [InlineData(300, 200, 3, 16)]
    [InlineData(200, 300, 2, 8)]
    public void RandomizedSvd_RecoversALowRankSpectrum(int m, int n, int batch, int rank)
    {
        // A_b = X diag(sigma) Y^T with orthonormal-ish random X, Y and sigma_j = 2^-j for j < rank, 0 after.
        var rnd = new Random(m + n);
        var a = new double[batch][];
        var sigma = Enumerable.Range(0, rank).Select(j => Math.Pow(2, -j)).ToArray();
        for (int b = 0; b < batch; b++)
        {
            var x = Orthonormal(rnd, m, rank);
            var y = Orthonormal(rnd, n, rank);
            a[b] = new double[(long)m * n];
            for (int j = 0; j < n; j++)
                for (int i = 0; i < m; i++)
                {
                    double acc = 0;
                    for (int c = 0; c < rank; c++) acc += x[c][i] * sigma[c] * y[c][j];
                    a[b][(long)j * m + i] = acc;
                }
        }
        using var dA = _ctx.Allocate<float>((long)batch * m * n);
        dA.CopyFrom(a.SelectMany(v => v.Select(z => (float)z)).ToArray());
        using var blas = CublasHandle.Create(_ctx, _stream);
        using var solver = CusolverHandle.Create(_ctx, _stream);
        using var r = RandomizedSvd.Compute(_ctx, blas, solver, _kernels, _stream, dA.Pointer, batch, m, n, new RandomizedSvdOptions(rank, 8, 1));
        var s = r.S.ToArray();
        var u = r.U.ToArray();
        var v = r.V.ToArray();
        for (int b = 0; b < batch; b++)
        {
            for (int j = 0; j < rank; j++)
                Assert.True(Math.Abs(s[b * r.Sketch + j] - sigma[j]) <= 1e-4 * sigma[0], $"matrix {b}: s[{j}] = {s[b * r.Sketch + j]}, expected {sigma[j]}");
            // U_k S_k V_k^T reconstructs A.
            int bb = b;
            double err = CpuReference.RelativeError((long)m * n, e => a[bb][e], e =>
            {
                long i = e % m, j = e / m;
                double acc = 0;
                for (int c = 0; c < rank; c++)
                    acc += u[(long)bb * m * r.Sketch + (long)c * m + i] * s[bb * r.Sketch + c] * v[(long)bb * n * r.Sketch + (long)c * n + j];
                return acc;
            });
            Assert.True(err <= 1e-4, $"matrix {b}: reconstruction error {err:E2}");
        }
    }

    [Fact]
    public void LowRankUpdate_AddsScaledOuterProducts()
    {
        const int M = 70, N = 45, K = 5;
        var rnd = new Random(3);
        var tau = Random(rnd, M * N, -1, 1);
        var u = Random(rnd, M * K, -1, 1);
        var delta = Random(rnd, K, 0, 2);
        var v = Random(rnd, N * K, -1, 1);
        using var dTau = _ctx.Allocate<float>(M * N);
        using var dU = _ctx.Allocate<float>(M * K);
        using var dUd = _ctx.Allocate<float>(M * K);
        using var dDelta = _ctx.Allocate<float>(K);
        using var dV = _ctx.Allocate<float>(N * K);
        using var blas = CublasHandle.Create(_ctx, _stream);
        dTau.CopyFrom(tau); dU.CopyFrom(u); dDelta.CopyFrom(delta); dV.CopyFrom(v);
        dUd.FillBytes(0xFF, _stream);
        _kernels.ScaleColumns(dU.Pointer, dDelta.Pointer, dUd.Pointer, M, K, 1, _stream);
        SvdMutation.ApplyLowRankUpdate(blas, dTau.Pointer, dUd.Pointer, dV.Pointer, M, N, K, N * K, 1);
        _stream.Synchronize();
        var got = dTau.ToArray();
        double err = CpuReference.RelativeError(M * N, e =>
        {
            long i = e % M, j = e / M;
            double acc = tau[e];
            for (int c = 0; c < K; c++) acc += (double)u[c * M + i] * delta[c] * v[c * N + j];
            return acc;
        }, e => got[e]);
        Assert.True(err <= 1e-6, $"relative error {err:E2}");
    }

    private static double Tolerance(DType t) => t switch { DType.F32 => 1e-6, DType.F16 => 1e-3, _ => 8e-3 };

    private static float[] Random(Random r, int n, float lo, float hi) => Enumerable.Range(0, n).Select(_ => lo + (hi - lo) * r.NextSingle()).ToArray();

    private static byte[] Encode(float[] f, DType t)
    {
        var bytes = new byte[f.Length * DTypes.SizeOf(t)];
        DTypeConversion.FromSingle(f, t, bytes);
        return bytes;
    }

    private static float[] Decode(byte[] b, DType t)
    {
        var f = new float[b.Length / DTypes.SizeOf(t)];
        DTypeConversion.ToSingle(b, t, f);
        return f;
    }

    /// <summary>cols orthonormal vectors of length rows (Gram–Schmidt on Gaussian-ish draws).</summary>
    private static double[][] Orthonormal(Random r, int rows, int cols)
    {
        var q = new double[cols][];
        for (int c = 0; c < cols; c++)
        {
            var v = Enumerable.Range(0, rows).Select(_ => r.NextDouble() * 2 - 1).ToArray();
            for (int p = 0; p < c; p++)
            {
                double d = 0;
                for (int i = 0; i < rows; i++) d += v[i] * q[p][i];
                for (int i = 0; i < rows; i++) v[i] -= d * q[p][i];
            }
            double norm = Math.Sqrt(v.Sum(x => x * x));
            q[c] = v.Select(x => x / norm).ToArray();
        }
        return q;
    }
}
