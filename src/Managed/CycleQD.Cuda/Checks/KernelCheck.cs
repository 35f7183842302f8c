using System.Diagnostics;
using CycleQD.Cuda.Blas;
using CycleQD.Cuda.Kernels;
using CycleQD.Cuda.Solver;
using CycleQD.Cuda.Svd;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Checks;

/// <summary>One line of the device check.</summary>
/// <param name="Kernel">Kernel or routine.</param>
/// <param name="Shape">rows×cols of the weight it ran on.</param>
/// <param name="RelativeError">‖gpu − ref‖/‖ref‖ against the float64 CPU reference (NaN when not computed).</param>
/// <param name="MedianMs">Median milliseconds over the timed repeats.</param>
/// <param name="Throughput">GB/s (memory-bound kernels) or TFLOP/s (GEMM), as text with its unit.</param>
/// <param name="CopyRatio">GB/s divided by the device-to-device copy bandwidth of the same run (memory-bound kernels only).</param>
/// <param name="Note">What the error compares, exceptions to the method.</param>
/// <param name="Tolerance">Largest acceptable relative error (NaN: informational row).</param>
internal sealed record KernelCheckRow(string Kernel, string Shape, double RelativeError, double MedianMs, string Throughput, double? CopyRatio, string Note, double Tolerance)
{
    /// <summary>False when the error is NaN or above the tolerance (rows without a tolerance always pass).</summary>
    public bool Passed => double.IsNaN(Tolerance) || RelativeError <= Tolerance;
}

/// <summary>Settings of the device check.</summary>
/// <param name="Shapes">Row-major weight shapes (rows, cols).</param>
/// <param name="Repeats">Timed repeats per kernel (median reported), after <paramref name="Warmup"/> runs.</param>
/// <param name="Warmup">Untimed runs first.</param>
/// <param name="SvdMaxRows">SVD comparisons run for shapes whose larger side is at most this (full gesvd of the 128256-row embedding takes minutes).</param>
/// <param name="SvdRanks">Ranks of the randomized SVDs.</param>
/// <param name="SvdRepeats">Timed repeats of each SVD.</param>
/// <param name="SvdOversampling">Randomized SVD oversampling p; −1 = max(10, k/2), the mutation's default.</param>
/// <param name="SvdPowerIterations">Randomized SVD power iterations q (3, the mutation's default).</param>
internal sealed record KernelCheckOptions(
    IReadOnlyList<(int Rows, int Cols)> Shapes,
    int Repeats = 20,
    int Warmup = 3,
    int SvdMaxRows = 14336,
    IReadOnlyList<int>? SvdRanks = null,
    int SvdRepeats = 3,
    int SvdOversampling = -1,
    int SvdPowerIterations = 3)
{
    /// <summary>The Llama-3-8B weight shapes.</summary>
    public static readonly IReadOnlyList<(int Rows, int Cols)> Llama3_8BShapes =
        [(4096, 4096), (1024, 4096), (14336, 4096), (4096, 14336), (128256, 4096)];
}

/// <summary>
/// Runs every production kernel on the GPU against its float64 CPU reference and times it: CUDA
/// events, L2 flushed (a buffer twice the L2 size rewritten) before each repeat, median reported,
/// with the device-to-device copy bandwidth measured in the same run as the yardstick. Then
/// full SVD (gesvd) against randomized SVD (ours, batched; cuSOLVER Xgesvdr) at the given ranks.
/// </summary>
internal sealed class KernelCheck : IDisposable
{
    private const int UpdateRank = 256;
    // bf16 keeps 8 significand bits: round-to-nearest leaves ≤ 2^-9 relative per element.
    private const double Bf16Tolerance = 4e-3;
    private const double F16Tolerance = 5e-4;
    private const double ExactTolerance = 1e-6;
    private const double GemmTolerance = 1e-5;
    // At the default p = max(10, k/2), q = 3 the top-256 values of the 1/(j+1) test spectrum came
    // within 1e-3 on an H200 (docs/perf.md); a broken SVD is off by O(1).
    private const double SvdTolerance = 5e-3;
    private readonly CudaContext _ctx;
    private readonly CudaStream _stream;
    private readonly CudaKernels _kernels;
    // Null when the machine has no cuBLAS / cuSOLVER (a driver-only GPU box): the element-wise
    // kernels are still checked and the GEMM and SVD rows say why they were skipped.
    private readonly CublasHandle? _blas;
    private readonly CusolverHandle? _solver;
    private readonly string? _mathUnavailable;
    private readonly CudaEvent _start, _end;
    private readonly DeviceBuffer<byte> _flush;
    private readonly KernelCheckOptions _options;

    /// <summary>Sets up streams, handles and the L2 flush buffer on <paramref name="context"/>.</summary>
    public KernelCheck(CudaContext context, KernelCheckOptions options)
    {
        _ctx = context;
        _options = options;
        _stream = CudaStream.Create(context);
        _kernels = new CudaKernels(context);
        try
        {
            _blas = CublasHandle.Create(context, _stream);
            _solver = CusolverHandle.Create(context, _stream);
        }
        catch (CudaUnavailableException e)
        {
            _blas?.Dispose();
            _blas = null;
            _mathUnavailable = e.Reason;
        }
        _start = CudaEvent.Create(context);
        _end = CudaEvent.Create(context);
        _flush = context.Allocate<byte>(Math.Max(2L * context.L2CacheBytes, 1 << 20));
    }

    /// <summary>Device-to-device copy bandwidth in GB/s (read + write), over a 1 GiB buffer.</summary>
    public double CopyBandwidth()
    {
        const long Bytes = 1L << 30;
        using var a = _ctx.Allocate<byte>(Bytes);
        using var b = _ctx.Allocate<byte>(Bytes);
        a.FillBytes(1, _stream);
        double ms = Time(() => a.CopyTo(b, _stream), _options.Repeats, _options.Warmup);
        return 2.0 * Bytes / (ms * 1e6);
    }

    /// <summary>Runs the element-wise kernels and the low-rank update on every shape.</summary>
    public IEnumerable<KernelCheckRow> Kernels(double copyGBs)
    {
        foreach (var (rows, cols) in _options.Shapes)
            foreach (var row in KernelsOn(rows, cols, copyGBs))
                yield return row;
    }

    /// <summary>Runs the element-wise kernels and the low-rank update on one rows×cols weight.</summary>
    public IEnumerable<KernelCheckRow> KernelsOn(int rows, int cols, double copyGBs)
    {
        long n = (long)rows * cols;
        string shape = $"{rows}x{cols}";
        var baseBits = new ushort[n];
        var p1 = new ushort[n];
        var p2 = new ushort[n];
        CpuReference.FillBF16(baseBits, 1, -0.05f, 0.05f);
        CpuReference.FillNear(baseBits, p1, 2, 0.01f);
        CpuReference.FillNear(baseBits, p2, 3, 0.01f);
        using var dBase = _ctx.Allocate<ushort>(n);
        using var dP1 = _ctx.Allocate<ushort>(n);
        using var dP2 = _ctx.Allocate<ushort>(n);
        using var dOut = _ctx.Allocate<ushort>(n);
        using var dTau = _ctx.Allocate<float>(n);
        dBase.CopyFrom(baseBits);
        dP1.CopyFrom(p1);
        dP2.CopyFrom(p2);
        var got16 = new ushort[n];
        var got32 = new float[n];
        static double B(ushort x) => DTypeConversion.BF16ToSingle(x);

        // merge: child = base + c1 (p1 − base) + c2 (p2 − base), weights 0.55 / 0.45 → normalised.
        double[] w = [0.55, 0.45];
        float c1 = (float)(w[0] / (w[0] + w[1])), c2 = (float)(w[1] / (w[0] + w[1]));
        void Merge() => _kernels.Merge(DType.BF16, dBase.Pointer, [dP1.Pointer, dP2.Pointer], w, dOut.Pointer, n, _stream);
        dOut.FillBytes(0xFF, _stream);
        Merge();
        _stream.Synchronize();
        dOut.CopyTo(got16);
        double err = CpuReference.RelativeError(n, i => B(baseBits[i]) + c1 * (B(p1[i]) - B(baseBits[i])) + c2 * (B(p2[i]) - B(baseBits[i])), i => B(got16[i]));
        yield return Bandwidth("merge bf16 (2 parents)", shape, err, Time(Merge), 8.0 * n, copyGBs, "vs float64; includes bf16 output rounding", Bf16Tolerance);
        if (n <= MergeGroupPlan.DefaultMaxGroupedElements)
            foreach (var r in MergeSetOn(rows, cols, copyGBs)) yield return r;

        // task vector: tau = p1 − base (bf16 in, f32 out) and its inverse.
        void TaskVector() => _kernels.TaskVector(DType.BF16, dP1.Pointer, dBase.Pointer, dTau.Pointer, n, _stream);
        dTau.FillBytes(0xFF, _stream);
        TaskVector();
        _stream.Synchronize();
        dTau.CopyTo(got32);
        err = CpuReference.RelativeError(n, i => B(p1[i]) - B(baseBits[i]), i => got32[i]);
        yield return Bandwidth("task_vector bf16->f32", shape, err, Time(TaskVector), 8.0 * n, copyGBs, "tau = theta - base", ExactTolerance);
        var tau = (float[])got32.Clone();

        void Apply() => _kernels.ApplyTaskVector(DType.BF16, dBase.Pointer, dTau.Pointer, dOut.Pointer, n, _stream);
        dOut.FillBytes(0xFF, _stream);
        Apply();
        _stream.Synchronize();
        dOut.CopyTo(got16);
        err = CpuReference.RelativeError(n, i => B(baseBits[i]) + tau[i], i => B(got16[i]));
        yield return Bandwidth("apply_task_vector f32->bf16", shape, err, Time(Apply), 8.0 * n, copyGBs, "theta = base + tau; bf16 rounding", Bf16Tolerance);

        // conversions, on tau scaled up to O(1) values.
        var f32 = new float[n];
        CpuReference.Fill(f32, 4, -4f, 4f);
        dTau.CopyFrom(f32);
        void ToBf16() => _kernels.Convert(DType.F32, DType.BF16, dTau.Pointer, dOut.Pointer, n, _stream);
        dOut.FillBytes(0xFF, _stream);
        ToBf16();
        _stream.Synchronize();
        dOut.CopyTo(got16);
        long differ = 0;
        for (long i = 0; i < n; i++) if (got16[i] != DTypeConversion.SingleToBF16(f32[i])) differ++;
        err = CpuReference.RelativeError(n, i => f32[i], i => B(got16[i]));
        yield return Bandwidth("convert f32->bf16", shape, err, Time(ToBf16), 6.0 * n, copyGBs, differ == 0 ? "bits identical to DTypeConversion" : $"{differ} elements differ from DTypeConversion", differ == 0 ? Bf16Tolerance : 0);

        var bf = (ushort[])got16.Clone();
        void ToF32() => _kernels.Convert(DType.BF16, DType.F32, dOut.Pointer, dTau.Pointer, n, _stream);
        dTau.FillBytes(0xFF, _stream);
        ToF32();
        _stream.Synchronize();
        dTau.CopyTo(got32);
        err = CpuReference.RelativeError(n, i => B(bf[i]), i => got32[i]);
        yield return Bandwidth("convert bf16->f32", shape, err, Time(ToF32), 6.0 * n, copyGBs, "exact widening expected (0)", 0);

        dTau.CopyFrom(f32);
        void ToF16() => _kernels.Convert(DType.F32, DType.F16, dTau.Pointer, dOut.Pointer, n, _stream);
        dOut.FillBytes(0xFF, _stream);
        ToF16();
        _stream.Synchronize();
        dOut.CopyTo(got16);
        differ = 0;
        for (long i = 0; i < n; i++) if (got16[i] != BitConverter.HalfToUInt16Bits((Half)f32[i])) differ++;
        err = CpuReference.RelativeError(n, i => f32[i], i => (double)CpuReference.AsHalf(got16[i]));
        yield return Bandwidth("convert f32->f16", shape, err, Time(ToF16), 6.0 * n, copyGBs, differ == 0 ? "bits identical to (Half) cast" : $"{differ} elements differ from (Half) cast", differ == 0 ? F16Tolerance : 0);

        var h16 = (ushort[])got16.Clone();
        void FromF16() => _kernels.Convert(DType.F16, DType.F32, dOut.Pointer, dTau.Pointer, n, _stream);
        dTau.FillBytes(0xFF, _stream);
        FromF16();
        _stream.Synchronize();
        dTau.CopyTo(got32);
        err = CpuReference.RelativeError(n, i => (double)CpuReference.AsHalf(h16[i]), i => got32[i]);
        yield return Bandwidth("convert f16->f32", shape, err, Time(FromF16), 6.0 * n, copyGBs, "exact widening expected (0)", 0);

        foreach (var r in MutationOn(rows, cols, copyGBs)) yield return r;
    }

    /// <summary>
    /// A set of <see cref="MergeSetSize"/> bf16 rows×cols tensors (distinct buffers, so no tensor is served from L2)
    /// merged with 2 parents one launch per tensor, then by one grouped launch (descriptors uploaded once, not timed):
    /// the grouped output must equal the per-tensor one bit for bit.
    /// </summary>
    private IEnumerable<KernelCheckRow> MergeSetOn(int rows, int cols, double copyGBs)
    {
        const int Set = MergeSetSize;
        long n = (long)rows * cols, all = n * Set;
        string shape = $"{Set}x {rows}x{cols}";
        var baseBits = new ushort[all];
        var p1 = new ushort[all];
        var p2 = new ushort[all];
        CpuReference.FillBF16(baseBits, 11, -0.05f, 0.05f);
        CpuReference.FillNear(baseBits, p1, 12, 0.01f);
        CpuReference.FillNear(baseBits, p2, 13, 0.01f);
        using var dBase = _ctx.Allocate<ushort>(all);
        using var dP1 = _ctx.Allocate<ushort>(all);
        using var dP2 = _ctx.Allocate<ushort>(all);
        using var dSingle = _ctx.Allocate<ushort>(all);
        using var dGrouped = _ctx.Allocate<ushort>(all);
        dBase.CopyFrom(baseBits);
        dP1.CopyFrom(p1);
        dP2.CopyFrom(p2);
        float[] coef = [0.55f, 0.45f];
        var plan = MergeGroupPlan.Create(Enumerable.Repeat((n, DType.BF16), Set).ToArray());
        var segments = CudaKernels.Segments(plan, t => dBase.At(t * n), (t, p) => (p == 0 ? dP1 : dP2).At(t * n), 2, t => dGrouped.At(t * n));
        using var dSegments = _ctx.Allocate<MergeSegment>(segments.Length);
        dSegments.CopyFrom(segments);

        void PerTensor()
        {
            for (int t = 0; t < Set; t++)
                _kernels.MergeCoefficients(DType.BF16, dBase.At(t * n), [dP1.At(t * n), dP2.At(t * n)], coef, dSingle.At(t * n), n, _stream);
        }
        void Grouped() => _kernels.LaunchGroups(plan, dSegments.Pointer, coef, _stream);
        dSingle.FillBytes(0xFF, _stream);
        dGrouped.FillBytes(0xFF, _stream);
        PerTensor();
        Grouped();
        _stream.Synchronize();
        var single = dSingle.ToArray();
        var grouped = dGrouped.ToArray();
        long differ = 0;
        for (long i = 0; i < all; i++) if (single[i] != grouped[i]) differ++;
        static double B(ushort x) => DTypeConversion.BF16ToSingle(x);
        double err = CpuReference.RelativeError(all, i => B(baseBits[i]) + coef[0] * (B(p1[i]) - B(baseBits[i])) + coef[1] * (B(p2[i]) - B(baseBits[i])), i => B(single[i]));
        yield return Bandwidth($"merge bf16 (2 parents), {Set} launches", shape, err, Time(PerTensor), 8.0 * all, copyGBs, "one launch per tensor; vs float64", Bf16Tolerance);
        yield return Bandwidth($"merge bf16 (2 parents), 1 grouped launch", shape, differ == 0 ? 0 : double.PositiveInfinity, Time(Grouped), 8.0 * all, copyGBs,
            differ == 0 ? "bits identical to the per-tensor launches" : $"{differ} elements differ from the per-tensor launches", 0);
    }

    /// <summary>Tensors per set in the grouped-merge rows: 8 × 4096×4096 bf16 is 256 MiB per operand, about one Llama-3-8B layer's attention.</summary>
    private const int MergeSetSize = 8;

    private IEnumerable<KernelCheckRow> MutationOn(int rows, int cols, double copyGBs)
    {
        string shape = $"{rows}x{cols}";
        // Column-major view of the row-major weight: m = cols, n = rows.
        int m = cols, nn = rows, k = Math.Min(UpdateRank, Math.Min(m, nn));
        const ulong Seed = 0x0123456789ABCDEF;
        const uint Generation = 17;
        uint tensorIndex = (uint)(rows ^ cols);

        var s = new float[k];
        CpuReference.Fill(s, 5, 0f, 10f);
        using var dS = _ctx.Allocate<float>(k);
        using var dDelta = _ctx.Allocate<float>(k);
        dS.CopyFrom(s);
        dDelta.FillBytes(0xFF, _stream);
        _kernels.RescaleSingularValues(dS.Pointer, dDelta.Pointer, k, Seed, tensorIndex, Generation, 0.3f, _stream);
        _stream.Synchronize();
        var (refS, refDelta) = CpuReference.Rescale(s, Seed, tensorIndex, Generation, 0.3f);
        var gotS = dS.ToArray();
        var delta = dDelta.ToArray();
        double err = Math.Max(CpuReference.RelativeError(k, i => refS[i], i => gotS[i]), CpuReference.RelativeError(k, i => refDelta[i], i => delta[i]));
        double ms = Time(() => _kernels.RescaleSingularValues(dS.Pointer, 0, k, Seed, tensorIndex, Generation, 0.3f, _stream));
        yield return new KernelCheckRow("sv_rescale (Philox)", $"k={k}", err, ms, "-", null, "s and r*s vs float64 with C# Philox", ExactTolerance);

        long mk = (long)m * k;
        var u = new float[mk];
        CpuReference.Fill(u, 6, -1f, 1f);
        using var dU = _ctx.Allocate<float>(mk);
        using var dUd = _ctx.Allocate<float>(mk);
        dU.CopyFrom(u);
        dDelta.CopyFrom(delta);
        void Scale() => _kernels.ScaleColumns(dU.Pointer, dDelta.Pointer, dUd.Pointer, m, k, 1, _stream);
        dUd.FillBytes(0xFF, _stream);
        Scale();
        _stream.Synchronize();
        var ud = dUd.ToArray();
        err = CpuReference.RelativeError(mk, i => (double)u[i] * delta[i / m], i => ud[i]);
        yield return Bandwidth("scale_columns f32", $"{m}x{k}", err, Time(Scale), 8.0 * mk, copyGBs, "U diag(r*s)", ExactTolerance);

        if (_blas is null)
        {
            yield return new KernelCheckRow("low-rank update GemmEx", shape, double.NaN, double.NaN, "-", null, "skipped: " + _mathUnavailable, double.NaN);
            yield break;
        }
        // tau (m x n, column-major) += Ud V^T through one GemmEx (exact float32, no TF32).
        long mn = (long)m * nn, nk = (long)nn * k;
        var v = new float[nk];
        CpuReference.Fill(v, 7, -1f, 1f);
        var tau0 = new float[mn];
        CpuReference.Fill(tau0, 8, -0.01f, 0.01f);
        using var dV = _ctx.Allocate<float>(nk);
        using var dTau = _ctx.Allocate<float>(mn);
        dV.CopyFrom(v);
        dTau.CopyFrom(tau0);
        SvdMutation.ApplyLowRankUpdate(_blas, dTau.Pointer, dUd.Pointer, dV.Pointer, m, nn, k, nk, 1);
        _stream.Synchronize();
        var got = dTau.ToArray();
        // Sampled float64 reference: 4096 entries (the full product is m·n·k multiply-adds).
        const int Samples = 4096;
        var idx = new long[Samples];
        ulong st = 99;
        for (int i = 0; i < Samples; i++) { st ^= st << 13; st ^= st >> 7; st ^= st << 17; idx[i] = (long)(st % (ulong)mn); }
        err = CpuReference.RelativeError(Samples, t =>
        {
            long e = idx[t], i = e % m, j = e / m;
            double acc = tau0[e];
            for (int c = 0; c < k; c++) acc += (double)ud[c * (long)m + i] * v[c * (long)nn + j];
            return acc;
        }, t => got[idx[t]]);
        ms = Time(() => SvdMutation.ApplyLowRankUpdate(_blas, dTau.Pointer, dUd.Pointer, dV.Pointer, m, nn, k, nk, 1));
        double tflops = 2.0 * m * nn * k / (ms * 1e9);
        yield return new KernelCheckRow("low-rank update GemmEx", shape, err, ms, $"{tflops:F1} TFLOP/s", null, $"k={k}; 4096 sampled entries vs float64", GemmTolerance);
    }

    /// <summary>Full gesvd vs randomized SVD (ours and Xgesvdr) per shape and rank; the error is the worst relative error of the top-k singular values against gesvd's.</summary>
    public IEnumerable<KernelCheckRow> Svd()
    {
        if (_blas is null || _solver is null)
        {
            yield return new KernelCheckRow("svd", "-", double.NaN, double.NaN, "-", null, "skipped: " + _mathUnavailable, double.NaN);
            yield break;
        }
        var seen = new HashSet<(int, int)>();
        foreach (var (rows, cols) in _options.Shapes)
        {
            if (!seen.Add((Math.Max(rows, cols), Math.Min(rows, cols)))) continue;
            foreach (var row in SvdOn(rows, cols)) yield return row;
        }
    }

    /// <summary>The SVD comparison for one shape (as m×n with m ≥ n).</summary>
    public IEnumerable<KernelCheckRow> SvdOn(int rows, int cols)
    {
        if (_blas is null || _solver is null)
        {
            yield return new KernelCheckRow("svd", "-", double.NaN, double.NaN, "-", null, "skipped: " + _mathUnavailable, double.NaN);
            yield break;
        }
        int m = Math.Max(rows, cols), n = Math.Min(rows, cols);
        if (m > _options.SvdMaxRows)
        {
            yield return new KernelCheckRow("svd", $"{m}x{n}", double.NaN, double.NaN, "-", null, $"skipped: larger side {m} > --svd-max-rows {_options.SvdMaxRows}", double.NaN);
            yield break;
        }
        foreach (var row in SvdOn(m, n, _options.SvdRanks ?? [64, 256], _blas, _solver)) yield return row;
    }

    private IEnumerable<KernelCheckRow> SvdOn(int m, int n, IReadOnlyList<int> ranks, CublasHandle blas, CusolverHandle solver)
    {
        string shape = $"{m}x{n}";
        long mn = (long)m * n;
        using var a = TestMatrix(m, n, blas);
        using var work = _ctx.Allocate<float>(mn);
        using var sFull = _ctx.Allocate<float>(n);
        double fullMs = TimeSvd(() =>
        {
            a.CopyTo(work, _stream);
        }, () => solver.Gesvd(m, n, work.Pointer, m, sFull.Pointer, 0, m, 0, n, vectors: false));
        var sRef = sFull.ToArray();
        double gesvdTflops = 4.0 * m * (double)n * n / (fullMs * 1e9);
        yield return new KernelCheckRow("svd full gesvd (values)", shape, double.NaN, fullMs, $"{gesvdTflops:F2} TFLOP/s", null, "reference singular values; spectrum s_j ~ 1/(j+1)", double.NaN);

        foreach (int k in ranks.Where(r => r <= n))
        {
            var opts = new RandomizedSvdOptions(k, OversamplingFor(k), _options.SvdPowerIterations);
            BatchedSvdResult? last = null;
            double ms = TimeSvd(() => { last?.Dispose(); last = null; },
                () => last = RandomizedSvd.Compute(_ctx, blas, solver, _kernels, _stream, a.Pointer, 1, m, n, opts));
            var s = last!.S.ToArray();
            last.Dispose();
            yield return new KernelCheckRow($"svd randomized (ours) k={k}", shape, TopKError(sRef, s, k), ms, $"{fullMs / ms:F1}x vs gesvd", null,
                $"p={opts.Oversampling}, q={opts.PowerIterations}; max rel. error of top-{k} values", SvdTolerance);

            int l = Math.Min(k + opts.Oversampling, n);
            using var sr = _ctx.Allocate<float>(l);
            using var ur = _ctx.Allocate<float>((long)m * l);
            using var vr = _ctx.Allocate<float>((long)n * l);
            ms = TimeSvd(() => a.CopyTo(work, _stream),
                () => solver.Xgesvdr(m, n, k, l - k, opts.PowerIterations, work.Pointer, m, sr.Pointer, ur.Pointer, m, vr.Pointer, n));
            s = sr.ToArray();
            yield return new KernelCheckRow($"svd Xgesvdr k={k}", shape, TopKError(sRef, s, k), ms, $"{fullMs / ms:F1}x vs gesvd", null,
                "cuSOLVER randomized, same p and q", SvdTolerance);
        }

        // The batched path: 8 matrices of this shape at once, per-matrix time.
        if (mn * 8 * 4 < (8L << 30))
        {
            const int Batch = 8;
            int k = ranks.Where(r => r <= n).DefaultIfEmpty(Math.Min(64, n)).Max();
            using var batch = _ctx.Allocate<float>(mn * Batch);
            for (int i = 0; i < Batch; i++)
                CudaStatus.Check(Interop.CudaDriver.cuMemcpyDtoDAsync(batch.At(i * mn), a.Pointer, (nuint)(mn * 4), _stream.Handle));
            BatchedSvdResult? last = null;
            double ms = TimeSvd(() => { last?.Dispose(); last = null; },
                () => last = RandomizedSvd.Compute(_ctx, blas, solver, _kernels, _stream, batch.Pointer, Batch, m, n, new RandomizedSvdOptions(k, OversamplingFor(k), _options.SvdPowerIterations)));
            var s = last!.S.ToArray();
            double worst = 0;
            for (int i = 0; i < Batch; i++) worst = Math.Max(worst, TopKError(sRef, s.AsSpan(i * last.Sketch, last.Sketch).ToArray(), k));
            last.Dispose();
            yield return new KernelCheckRow($"svd randomized batch of {Batch} k={k}", shape, worst, ms / Batch, $"{fullMs / (ms / Batch):F1}x vs gesvd", null, "time per matrix", SvdTolerance);
        }
    }

    private int OversamplingFor(int k) => new CycleQD.Core.Compute.MutationOptions(Oversampling: _options.SvdOversampling).OversamplingFor(k);

    /// <summary>max over i &lt; k of |ŝᵢ − sᵢ| / sᵢ.</summary>
    internal static double TopKError(float[] reference, float[] approx, int k)
    {
        double worst = 0;
        for (int i = 0; i < k; i++) worst = Math.Max(worst, Math.Abs(approx[i] - (double)reference[i]) / reference[i]);
        return worst;
    }

    /// <summary>m×n column-major X diag(σ) Yᵀ with Gaussian X (m×n), Y (n×n) and σⱼ = 1/(j+1): a decaying spectrum like a weight delta's.</summary>
    private DeviceBuffer<float> TestMatrix(int m, int n, CublasHandle blas)
    {
        using var x = _ctx.Allocate<float>((long)m * n);
        using var y = _ctx.Allocate<float>((long)n * n);
        using var sigma = _ctx.Allocate<float>(n);
        var sg = new float[n];
        for (int j = 0; j < n; j++) sg[j] = 1f / (j + 1);
        sigma.CopyFrom(sg);
        _kernels.FillGaussian(x.Pointer, x.Length, 11, 1, 0, _stream);
        _kernels.FillGaussian(y.Pointer, y.Length, 11, 2, 0, _stream);
        _kernels.ScaleColumns(x.Pointer, sigma.Pointer, x.Pointer, m, n, 1, _stream);
        var a = _ctx.Allocate<float>((long)m * n);
        blas.Gemm(false, true, m, n, n, 1f, x.Pointer, GemmType.F32, m, y.Pointer, GemmType.F32, n, 0f, a.Pointer, GemmType.F32, m);
        _stream.Synchronize();
        return a;
    }

    private static KernelCheckRow Bandwidth(string kernel, string shape, double err, double ms, double bytes, double copyGBs, string note, double tolerance)
    {
        double gbs = bytes / (ms * 1e6);
        return new KernelCheckRow(kernel, shape, err, ms, $"{gbs:F0} GB/s", gbs / copyGBs, note, tolerance);
    }

    private double Time(Action launch) => Time(launch, _options.Repeats, _options.Warmup);

    private double Time(Action launch, int repeats, int warmup)
    {
        for (int i = 0; i < warmup; i++) launch();
        var ms = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            _flush.FillBytes((byte)i, _stream);
            _start.Record(_stream);
            launch();
            _end.Record(_stream);
            ms[i] = CudaEvent.ElapsedMilliseconds(_start, _end);
        }
        Array.Sort(ms);
        return ms[repeats / 2];
    }

    /// <summary>Median wall time of a synchronous SVD call (cuSOLVER waits on devInfo), prepare() untimed before each.</summary>
    private double TimeSvd(Action prepare, Action run)
    {
        var ms = new double[Math.Max(1, _options.SvdRepeats)];
        prepare(); run(); // warm-up: JIT, workspace allocation
        for (int i = 0; i < ms.Length; i++)
        {
            prepare();
            _flush.FillBytes((byte)i, _stream);
            _stream.Synchronize();
            var sw = Stopwatch.StartNew();
            run();
            _stream.Synchronize();
            ms[i] = sw.Elapsed.TotalMilliseconds;
        }
        Array.Sort(ms);
        return ms[ms.Length / 2];
    }

    /// <summary>Frees the buffers and handles.</summary>
    public void Dispose()
    {
        _flush.Dispose();
        _start.Dispose();
        _end.Dispose();
        _solver?.Dispose();
        _blas?.Dispose();
        _stream.Dispose();
    }
}
