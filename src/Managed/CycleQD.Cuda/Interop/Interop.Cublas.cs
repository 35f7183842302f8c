using System.Runtime.InteropServices;

namespace CycleQD.Cuda;

internal static partial class Interop
{
    /// <summary>cuBLAS (libcublas.so.13/.12/.11): handle, stream, math mode and the two Ex GEMMs.</summary>
    internal static partial class Cublas
    {
        [LibraryImport(Libraries.Cublas, EntryPoint = "cublasCreate_v2")]
        internal static partial cublasStatus_t cublasCreate(out nint handle);

        [LibraryImport(Libraries.Cublas, EntryPoint = "cublasDestroy_v2")]
        internal static partial cublasStatus_t cublasDestroy(nint handle);

        [LibraryImport(Libraries.Cublas, EntryPoint = "cublasSetStream_v2")]
        internal static partial cublasStatus_t cublasSetStream(nint handle, nint stream);

        [LibraryImport(Libraries.Cublas, EntryPoint = "cublasSetMathMode")]
        internal static partial cublasStatus_t cublasSetMathMode(nint handle, cublasMath_t mode);

        [LibraryImport(Libraries.Cublas, EntryPoint = "cublasGemmEx")]
        internal static unsafe partial cublasStatus_t cublasGemmEx(nint handle, cublasOperation_t transa, cublasOperation_t transb,
            int m, int n, int k, void* alpha, ulong a, cudaDataType aType, int lda, ulong b, cudaDataType bType, int ldb,
            void* beta, ulong c, cudaDataType cType, int ldc, cublasComputeType_t computeType, cublasGemmAlgo_t algo);

        [LibraryImport(Libraries.Cublas, EntryPoint = "cublasGemmStridedBatchedEx")]
        internal static unsafe partial cublasStatus_t cublasGemmStridedBatchedEx(nint handle, cublasOperation_t transa, cublasOperation_t transb,
            int m, int n, int k, void* alpha, ulong a, cudaDataType aType, int lda, long strideA,
            ulong b, cudaDataType bType, int ldb, long strideB, void* beta, ulong c, cudaDataType cType, int ldc, long strideC,
            int batchCount, cublasComputeType_t computeType, cublasGemmAlgo_t algo);
    }

    internal enum cublasStatus_t
    {
        CUBLAS_STATUS_SUCCESS = 0,
        CUBLAS_STATUS_NOT_INITIALIZED = 1,
        CUBLAS_STATUS_ALLOC_FAILED = 3,
        CUBLAS_STATUS_INVALID_VALUE = 7,
        CUBLAS_STATUS_ARCH_MISMATCH = 8,
        CUBLAS_STATUS_MAPPING_ERROR = 11,
        CUBLAS_STATUS_EXECUTION_FAILED = 13,
        CUBLAS_STATUS_INTERNAL_ERROR = 14,
        CUBLAS_STATUS_NOT_SUPPORTED = 15,
        CUBLAS_STATUS_LICENSE_ERROR = 16,
    }

    internal enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 }

    internal enum cublasMath_t
    {
        CUBLAS_DEFAULT_MATH = 0,
        CUBLAS_PEDANTIC_MATH = 2,
        CUBLAS_TF32_TENSOR_OP_MATH = 3,
    }

    internal enum cublasComputeType_t
    {
        CUBLAS_COMPUTE_32F = 68,
        CUBLAS_COMPUTE_32F_PEDANTIC = 69,
        CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
    }

    internal enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 }

    /// <summary>library_types.h's cudaDataType_t (shared by cuBLAS and cuSOLVER).</summary>
    internal enum cudaDataType
    {
        CUDA_R_32F = 0,
        CUDA_R_64F = 1,
        CUDA_R_16F = 2,
        CUDA_R_16BF = 14,
    }
}
