using CycleQD.Core.Random;
using static CycleQD.Cpu.Interop;

namespace CycleQD.Cpu.Linalg;

/// <summary>
/// Truncated SVD A ≈ U diag(S) Vt of a row-major m × n float32 matrix: U is m × k (row stride
/// <see cref="LdU"/>), S descending (k), Vt is k × n (row stride n). Arrays are owned by the caller.
/// </summary>
internal sealed record SvdResult(float[] U, int LdU, float[] S, float[] Vt, int K);

/// <summary>Full SVD through LAPACKE_sgesdd and randomized truncated SVD through cblas_sgemm + QR.</summary>
internal static unsafe class Svd
{
    /// <summary>Thin SVD of a (m × n, row-major; not modified), keeping the top <paramref name="k"/> components (k ≤ 0: all).</summary>
    public static SvdResult Full(ReadOnlySpan<float> a, int m, int n, int k)
    {
        int r = Math.Min(m, n);
        k = k <= 0 ? r : Math.Min(k, r);
        var work = a.ToArray();
        var s = new float[r];
        var u = new float[(long)m * r];
        var vt = new float[(long)r * n];
        fixed (float* pa = work, ps = s, pu = u, pvt = vt)
        {
            int info = Lapacke.LAPACKE_sgesdd(Lapacke.RowMajor, (byte)'S', m, n, pa, n, ps, pu, r, pvt, n);
            if (info != 0) throw new InvalidOperationException($"LAPACKE_sgesdd({m}×{n}) failed: info = {info}");
        }
        if (k < r) Array.Resize(ref s, k);
        if (k < r) Array.Resize(ref vt, k * n);
        return new SvdResult(u, r, s, vt, k);
    }

    /// <summary>
    /// Randomized truncated SVD (Halko, Martinsson, Tropp 2011, algorithms 4.4 and 5.1): sketch
    /// Y = A Ω with Ω n × l Gaussian (l = min(k + oversampling, min(m, n))), <paramref name="powerIterations"/>
    /// rounds of re-orthonormalised power iteration, B = Qᵀ A, SVD of B. Ω's element e (row-major)
    /// is Philox normal e of (seed, stream, generation) with purpose <see cref="Streams.SvdSketch"/>,
    /// so another backend can form the same sketch.
    /// </summary>
    public static SvdResult Randomized(ReadOnlySpan<float> a, int m, int n, int k, int oversampling, int powerIterations,
        ulong seed, uint stream, uint generation)
    {
        int r = Math.Min(m, n);
        k = Math.Clamp(k, 1, r);
        int l = Math.Min(k + oversampling, r);
        var omega = new float[(long)n * l];
        Parallel.For(0, n, row =>
        {
            long off = (long)row * l;
            for (int c = 0; c < l; c++)
                omega[off + c] = Philox4x32.Normal(seed, stream, generation, Streams.SvdSketch, (ulong)(off + c));
        });
        var y = new float[(long)m * l];
        var z = new float[(long)n * l];
        var b = new float[(long)l * n];
        fixed (float* pa = a, pw = omega, py = y, pz = z, pb = b)
        {
            Gemm(false, false, m, l, n, pa, n, pw, l, py, l);
            Orthonormalise(py, m, l);
            for (int q = 0; q < powerIterations; q++)
            {
                Gemm(true, false, n, l, m, pa, n, py, l, pz, l);
                Orthonormalise(pz, n, l);
                Gemm(false, false, m, l, n, pa, n, pz, l, py, l);
                Orthonormalise(py, m, l);
            }
            Gemm(true, false, l, n, m, py, l, pa, n, pb, n);
        }
        var small = Full(b, l, n, k);
        var u = new float[(long)m * small.LdU];
        fixed (float* py = y, pub = small.U, pu = u)
            Gemm(false, false, m, small.LdU, l, py, l, pub, small.LdU, pu, small.LdU);
        return new SvdResult(u, small.LdU, small.S, small.Vt, k);
    }

    /// <summary>C (m × n) = op(A) op(B), row-major; op(A) is m × kk.</summary>
    internal static void Gemm(bool transA, bool transB, int m, int n, int kk, float* a, int lda, float* b, int ldb, float* c, int ldc, float beta = 0f)
    {
        OpenBlas.cblas_sgemm(OpenBlas.RowMajor, transA ? OpenBlas.Trans : OpenBlas.NoTrans, transB ? OpenBlas.Trans : OpenBlas.NoTrans,
            m, n, kk, 1f, a, lda, b, ldb, beta, c, ldc);
    }

    /// <summary>Replaces the columns of a (rows × cols, row-major, rows ≥ cols) by an orthonormal basis of their span (QR).</summary>
    private static void Orthonormalise(float* a, int rows, int cols)
    {
        var tau = new float[cols];
        fixed (float* pt = tau)
        {
            int info = Lapacke.LAPACKE_sgeqrf(Lapacke.RowMajor, rows, cols, a, cols, pt);
            if (info != 0) throw new InvalidOperationException($"LAPACKE_sgeqrf({rows}×{cols}) failed: info = {info}");
            info = Lapacke.LAPACKE_sorgqr(Lapacke.RowMajor, rows, cols, cols, a, cols, pt);
            if (info != 0) throw new InvalidOperationException($"LAPACKE_sorgqr({rows}×{cols}) failed: info = {info}");
        }
    }
}
