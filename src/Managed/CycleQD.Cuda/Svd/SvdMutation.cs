using CycleQD.Cuda.Blas;
using CycleQD.Cuda.Kernels;

namespace CycleQD.Cuda.Svd;

/// <summary>
/// The SVD-based mutation applied to a batch of task vectors from their truncated SVD:
/// s ← s·(1 + r) with r = w_max·u (Philox, stream = tensor index) and
/// τ += U diag(r ⊙ s) Vᵀ, i.e. τ' = τ − U_k S_k V_kᵀ + U_k S'_k V_kᵀ: the top-k singular values are
/// rescaled, the tail (below rank k) is left as it was.
/// </summary>
internal static class SvdMutation
{
    /// <summary>
    /// Rescales <paramref name="svd"/>.S in place and adds the low-rank update to the batch of
    /// column-major m×n float32 task vectors at <paramref name="tau"/> (those the SVD was computed
    /// from). Matrix i uses Philox stream <paramref name="tensorIndices"/>[i]. Asynchronous on <paramref name="stream"/>.
    /// </summary>
    /// <exception cref="ArgumentException">one tensor index per matrix is required.</exception>
    public static void Apply(CudaContext context, CublasHandle blas, CudaKernels kernels, CudaStream stream,
        BatchedSvdResult svd, ulong tau, ReadOnlySpan<uint> tensorIndices, ulong seed, uint generation, float wMax)
    {
        if (tensorIndices.Length != svd.Batch)
            throw new ArgumentException($"{tensorIndices.Length} tensor indices for a batch of {svd.Batch}", nameof(tensorIndices));
        int k = svd.Rank, l = svd.Sketch, m = svd.M, n = svd.N;
        using var delta = context.Allocate<float>((long)svd.Batch * k);
        using var scaledU = context.Allocate<float>((long)svd.Batch * m * k);
        for (int i = 0; i < svd.Batch; i++)
            kernels.RescaleSingularValues(svd.S.At((long)i * l), delta.At((long)i * k), k, seed, tensorIndices[i], generation, wMax, stream);
        // U's first k columns are the first m·k elements of each matrix's U (stride m·l).
        for (int i = 0; i < svd.Batch; i++)
            kernels.ScaleColumns(svd.U.At((long)i * m * l), delta.At((long)i * k), scaledU.At((long)i * m * k), m, k, 1, stream);
        ApplyLowRankUpdate(blas, tau, scaledU.Pointer, svd.V.Pointer, m, n, k, (long)n * l, svd.Batch);
        stream.Synchronize();
    }

    /// <summary>
    /// τᵢ += Aᵢ Bᵢᵀ for i &lt; batch: τ column-major m×n (stride m·n), A = U diag(δ) m×k (stride m·k),
    /// B = V n×k with leading dimension n and stride <paramref name="vStride"/>. One strided-batched GemmEx.
    /// </summary>
    public static void ApplyLowRankUpdate(CublasHandle blas, ulong tau, ulong scaledU, ulong v, int m, int n, int k, long vStride, int batch) =>
        blas.GemmStridedBatched(false, true, m, n, k, 1f, scaledU, GemmType.F32, m, (long)m * k, v, GemmType.F32, n, vStride,
            1f, tau, GemmType.F32, m, (long)m * n, batch);
}
