using System.Runtime.InteropServices;

namespace CycleQD.Cuda.Blas;

/// <summary>Storage types a GEMM operand may have (cudaDataType subset).</summary>
internal enum GemmType
{
    /// <summary>float32.</summary>
    F32 = Interop.cudaDataType.CUDA_R_32F,
    /// <summary>float16.</summary>
    F16 = Interop.cudaDataType.CUDA_R_16F,
    /// <summary>bfloat16.</summary>
    BF16 = Interop.cudaDataType.CUDA_R_16BF,
}

/// <summary>
/// A cuBLAS handle bound to one stream. Matrices are column-major, as cuBLAS sees them (a
/// row-major r×c tensor is a column-major c×r matrix). Computation is float32; TF32 tensor cores
/// are used only when <see cref="AllowTf32"/> is set. Not thread-safe: one handle per thread.
/// Released as every <see cref="CudaHandle"/> (by its context when only finalized).
/// </summary>
internal sealed class CublasHandle : CudaHandle
{
    private CublasHandle(CudaContext context) : base(context, NativeHandleKind.Cublas) { }

    /// <summary>When true, float32 GEMMs may round inputs to TF32 (≈1e-3 relative); default false (exact float32).</summary>
    public bool AllowTf32 { get; set; }

    /// <summary>Creates a handle in <paramref name="context"/> whose work goes on <paramref name="stream"/>.</summary>
    /// <exception cref="CudaUnavailableException">libcublas (CUDA 11, 12 or 13) cannot be found.</exception>
    public static CublasHandle Create(CudaContext context, CudaStream stream)
    {
        context.MakeCurrent();
        CudaLibraryResolver.EnsureInstalled();
        nint h;
        try { CudaStatus.Check(Interop.Cublas.cublasCreate(out h)); }
        catch (DllNotFoundException)
        {
            throw new CudaUnavailableException("cuBLAS not found (searched " + string.Join(", ", Interop.Libraries.Sonames[Interop.Libraries.Cublas]) + " on the loader path, CUDA_HOME, /usr/local/cuda*/lib64 and LD_LIBRARY_PATH)");
        }
        var blas = new CublasHandle(context);
        blas.Attach(h);
        CudaStatus.Check(Interop.Cublas.cublasSetStream(h, stream.Handle));
        CudaStatus.Check(Interop.Cublas.cublasSetMathMode(h, Interop.cublasMath_t.CUBLAS_DEFAULT_MATH));
        return blas;
    }

    /// <summary>
    /// C = α·op(A)·op(B) + β·C with C m×n, op(A) m×k, op(B) k×n, all column-major with leading
    /// dimensions lda/ldb/ldc; C is float32 (<paramref name="cType"/>).
    /// </summary>
    public unsafe void Gemm(bool transA, bool transB, int m, int n, int k,
        float alpha, ulong a, GemmType aType, int lda, ulong b, GemmType bType, int ldb,
        float beta, ulong c, GemmType cType, int ldc)
    {
        CudaStatus.Check(Interop.Cublas.cublasGemmEx(handle, Op(transA), Op(transB), m, n, k, &alpha,
            a, (Interop.cudaDataType)aType, lda, b, (Interop.cudaDataType)bType, ldb, &beta, c, (Interop.cudaDataType)cType, ldc,
            Compute, Interop.cublasGemmAlgo_t.CUBLAS_GEMM_DEFAULT));
    }

    /// <summary>
    /// <paramref name="batch"/> GEMMs as <see cref="Gemm"/>, operand i at a + i·strideA elements (and so on);
    /// a stride of 0 shares one operand across the batch.
    /// </summary>
    public unsafe void GemmStridedBatched(bool transA, bool transB, int m, int n, int k,
        float alpha, ulong a, GemmType aType, int lda, long strideA, ulong b, GemmType bType, int ldb, long strideB,
        float beta, ulong c, GemmType cType, int ldc, long strideC, int batch)
    {
        CudaStatus.Check(Interop.Cublas.cublasGemmStridedBatchedEx(handle, Op(transA), Op(transB), m, n, k, &alpha,
            a, (Interop.cudaDataType)aType, lda, strideA, b, (Interop.cudaDataType)bType, ldb, strideB, &beta,
            c, (Interop.cudaDataType)cType, ldc, strideC, batch, Compute, Interop.cublasGemmAlgo_t.CUBLAS_GEMM_DEFAULT));
    }

    private Interop.cublasComputeType_t Compute => AllowTf32
        ? Interop.cublasComputeType_t.CUBLAS_COMPUTE_32F_FAST_TF32
        : Interop.cublasComputeType_t.CUBLAS_COMPUTE_32F;

    private static Interop.cublasOperation_t Op(bool t) => t ? Interop.cublasOperation_t.CUBLAS_OP_T : Interop.cublasOperation_t.CUBLAS_OP_N;
}
