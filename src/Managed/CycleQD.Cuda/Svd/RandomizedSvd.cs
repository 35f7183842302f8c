using CycleQD.Cuda.Blas;
using CycleQD.Cuda.Kernels;
using CycleQD.Cuda.Solver;

namespace CycleQD.Cuda.Svd;

/// <summary>Settings of the randomized range finder (Halko, Martinsson, Tropp 2011, alg. 4.4 + 5.1).</summary>
/// <param name="Rank">k: singular triplets wanted.</param>
/// <param name="Oversampling">p: extra columns of the sketch (l = k + p, capped at min(m, n)). No default here: the
/// mutation's comes from <see cref="CycleQD.Core.Compute.MutationOptions.OversamplingFor"/>, its one source.</param>
/// <param name="PowerIterations">q: subspace iterations, each re-orthonormalised (the mutation's default:
/// <see cref="CycleQD.Core.Compute.MutationOptions.PowerIterations"/>).</param>
/// <param name="Seed">Seed of the Gaussian test matrix (Philox; stream and generation 0).</param>
internal sealed record RandomizedSvdOptions(int Rank, int Oversampling, int PowerIterations, ulong Seed = 0x5EED);

/// <summary>
/// Thin SVDs of a batch of same-shaped matrices: S is batch×l (descending), U batch×m×l and V
/// batch×n×l, column-major and back to back; the first <see cref="Rank"/> columns (the first
/// m·k, n·k elements of each matrix) are the rank-k answer. The buffers belong to this object.
/// </summary>
internal sealed class BatchedSvdResult(int batch, int m, int n, int rank, int sketch, DeviceBuffer<float> s, DeviceBuffer<float> u, DeviceBuffer<float> v) : IDisposable
{
    /// <summary>Matrices.</summary>
    public int Batch { get; } = batch;
    /// <summary>Rows of each matrix.</summary>
    public int M { get; } = m;
    /// <summary>Columns of each matrix.</summary>
    public int N { get; } = n;
    /// <summary>k.</summary>
    public int Rank { get; } = rank;
    /// <summary>l = columns computed (≥ k); leading dimension of nothing, the per-matrix column count.</summary>
    public int Sketch { get; } = sketch;
    /// <summary>batch×l singular values.</summary>
    public DeviceBuffer<float> S { get; } = s;
    /// <summary>batch×(m×l) left singular vectors, column-major.</summary>
    public DeviceBuffer<float> U { get; } = u;
    /// <summary>batch×(n×l) right singular vectors, column-major (V, not Vᵀ).</summary>
    public DeviceBuffer<float> V { get; } = v;

    /// <inheritdoc/>
    public void Dispose()
    {
        S.Dispose();
        U.Dispose();
        V.Dispose();
    }
}

/// <summary>
/// Randomized truncated SVD over all same-shaped matrices of a model at once (e.g. the 32
/// q_proj of Llama-3-8B): the sketches and projections are strided-batched GEMMs, the
/// orthonormalisations per-matrix cuSOLVER QR, the small factorisation a Jacobi SVD of the
/// tall n×l matrix Aᵀ Q. A is read, never written.
/// </summary>
internal static class RandomizedSvd
{
    /// <summary>Device floats the routine allocates for one call (besides A), for memory planning.</summary>
    public static long WorkspaceFloats(int batch, int m, int n, int sketch) =>
        (long)n * sketch + (long)batch * (2L * m * sketch + 2L * n * sketch + (long)sketch * sketch + 2L * sketch);

    /// <summary>
    /// SVD of the <paramref name="batch"/> column-major m×n float32 matrices at <paramref name="a"/>
    /// (lda = m, matrix i at a + i·m·n). Work goes on the handles' stream; the result is ready when it returns.
    /// </summary>
    /// <exception cref="ArgumentException">a non-positive size, or a rank above min(m, n).</exception>
    public static BatchedSvdResult Compute(CudaContext context, CublasHandle blas, CusolverHandle solver, CudaKernels kernels, CudaStream stream,
        ulong a, int batch, int m, int n, RandomizedSvdOptions options)
    {
        if (batch <= 0 || m <= 0 || n <= 0) throw new ArgumentException($"batch {batch} of {m}×{n} matrices: sizes must be positive");
        int minDim = Math.Min(m, n);
        if (options.Rank <= 0 || options.Rank > minDim) throw new ArgumentException($"rank {options.Rank} is outside 1..{minDim} for {m}×{n} matrices");
        if (options.Oversampling < 0 || options.PowerIterations < 0) throw new ArgumentException("oversampling and power iterations must be >= 0");
        int l = Math.Min(options.Rank + options.Oversampling, minDim);
        long mn = (long)m * n, ml = (long)m * l, nl = (long)n * l, ll = (long)l * l;
        const GemmType F = GemmType.F32;

        using var omega = context.Allocate<float>(nl);
        using var q = context.Allocate<float>(batch * ml);
        using var z = context.Allocate<float>(batch * nl);
        using var tau = context.Allocate<float>(batch * (long)l);
        using var vb = context.Allocate<float>(batch * ll);
        var s = context.Allocate<float>(batch * (long)l);
        var u = context.Allocate<float>(batch * ml);
        var v = context.Allocate<float>(batch * nl);
        try
        {
            kernels.FillGaussian(omega.Pointer, nl, options.Seed, 0, 0, stream);
            // Y = A Ω (Ω shared by the batch: stride 0).
            blas.GemmStridedBatched(false, false, m, l, n, 1f, a, F, m, mn, omega.Pointer, F, n, 0, 0f, q.Pointer, F, m, ml, batch);
            Orthonormalize(solver, q, tau, batch, m, l);
            for (int it = 0; it < options.PowerIterations; it++)
            {
                // Z = Aᵀ Q, orthonormalised; Y = A Z, orthonormalised.
                blas.GemmStridedBatched(true, false, n, l, m, 1f, a, F, m, mn, q.Pointer, F, m, ml, 0f, z.Pointer, F, n, nl, batch);
                Orthonormalize(solver, z, tau, batch, n, l);
                blas.GemmStridedBatched(false, false, m, l, n, 1f, a, F, m, mn, z.Pointer, F, n, nl, 0f, q.Pointer, F, m, ml, batch);
                Orthonormalize(solver, q, tau, batch, m, l);
            }
            // Bᵀ = Aᵀ Q (n×l, tall); Bᵀ = Ub S Vbᵀ  ⇒  A ≈ Q B = (Q Vb) S Ubᵀ: U = Q Vb, V = Ub.
            blas.GemmStridedBatched(true, false, n, l, m, 1f, a, F, m, mn, q.Pointer, F, m, ml, 0f, z.Pointer, F, n, nl, batch);
            for (int i = 0; i < batch; i++)
                solver.Gesvdj(n, l, z.At(i * nl), n, s.At(i * (long)l), v.At(i * nl), n, vb.At(i * ll), l);
            blas.GemmStridedBatched(false, false, m, l, l, 1f, q.Pointer, F, m, ml, vb.Pointer, F, l, ll, 0f, u.Pointer, F, m, ml, batch);
            stream.Synchronize();
            return new BatchedSvdResult(batch, m, n, options.Rank, l, s, u, v);
        }
        catch
        {
            s.Dispose(); u.Dispose(); v.Dispose();
            throw;
        }
    }

    private static void Orthonormalize(CusolverHandle solver, DeviceBuffer<float> x, DeviceBuffer<float> tau, int batch, int rows, int cols)
    {
        long per = (long)rows * cols;
        for (int i = 0; i < batch; i++)
        {
            solver.Geqrf(rows, cols, x.At(i * per), rows, tau.At(i * (long)cols));
            solver.Orgqr(rows, cols, cols, x.At(i * per), rows, tau.At(i * (long)cols));
        }
    }
}
