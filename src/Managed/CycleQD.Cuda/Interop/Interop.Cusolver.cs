using System.Runtime.InteropServices;

namespace CycleQD.Cuda;

internal static partial class Interop
{
    /// <summary>
    /// cuSOLVER dense (libcusolver.so.12/.11): QR (geqrf + orgqr), Jacobi SVD (single and
    /// batched), QR-based SVD (gesvd) and the randomized 64-bit-API SVD (Xgesvdr), float32 only.
    /// </summary>
    internal static partial class Cusolver
    {
        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnCreate")]
        internal static partial cusolverStatus_t cusolverDnCreate(out nint handle);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnDestroy")]
        internal static partial cusolverStatus_t cusolverDnDestroy(nint handle);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnSetStream")]
        internal static partial cusolverStatus_t cusolverDnSetStream(nint handle, nint stream);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnSgeqrf_bufferSize")]
        internal static partial cusolverStatus_t cusolverDnSgeqrf_bufferSize(nint handle, int m, int n, ulong a, int lda, out int lwork);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnSgeqrf")]
        internal static partial cusolverStatus_t cusolverDnSgeqrf(nint handle, int m, int n, ulong a, int lda, ulong tau, ulong work, int lwork, ulong devInfo);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnSorgqr_bufferSize")]
        internal static partial cusolverStatus_t cusolverDnSorgqr_bufferSize(nint handle, int m, int n, int k, ulong a, int lda, ulong tau, out int lwork);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnSorgqr")]
        internal static partial cusolverStatus_t cusolverDnSorgqr(nint handle, int m, int n, int k, ulong a, int lda, ulong tau, ulong work, int lwork, ulong devInfo);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnCreateGesvdjInfo")]
        internal static partial cusolverStatus_t cusolverDnCreateGesvdjInfo(out nint info);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnDestroyGesvdjInfo")]
        internal static partial cusolverStatus_t cusolverDnDestroyGesvdjInfo(nint info);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnXgesvdjSetTolerance")]
        internal static partial cusolverStatus_t cusolverDnXgesvdjSetTolerance(nint info, double tolerance);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnXgesvdjSetMaxSweeps")]
        internal static partial cusolverStatus_t cusolverDnXgesvdjSetMaxSweeps(nint info, int maxSweeps);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnSgesvdj_bufferSize")]
        internal static partial cusolverStatus_t cusolverDnSgesvdj_bufferSize(nint handle, cusolverEigMode_t jobz, int econ, int m, int n,
            ulong a, int lda, ulong s, ulong u, int ldu, ulong v, int ldv, out int lwork, nint parameters);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnSgesvdj")]
        internal static partial cusolverStatus_t cusolverDnSgesvdj(nint handle, cusolverEigMode_t jobz, int econ, int m, int n,
            ulong a, int lda, ulong s, ulong u, int ldu, ulong v, int ldv, ulong work, int lwork, ulong info, nint parameters);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnSgesvdjBatched_bufferSize")]
        internal static partial cusolverStatus_t cusolverDnSgesvdjBatched_bufferSize(nint handle, cusolverEigMode_t jobz, int m, int n,
            ulong a, int lda, ulong s, ulong u, int ldu, ulong v, int ldv, out int lwork, nint parameters, int batchSize);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnSgesvdjBatched")]
        internal static partial cusolverStatus_t cusolverDnSgesvdjBatched(nint handle, cusolverEigMode_t jobz, int m, int n,
            ulong a, int lda, ulong s, ulong u, int ldu, ulong v, int ldv, ulong work, int lwork, ulong info, nint parameters, int batchSize);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnSgesvd_bufferSize")]
        internal static partial cusolverStatus_t cusolverDnSgesvd_bufferSize(nint handle, int m, int n, out int lwork);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnSgesvd")]
        internal static partial cusolverStatus_t cusolverDnSgesvd(nint handle, sbyte jobu, sbyte jobvt, int m, int n,
            ulong a, int lda, ulong s, ulong u, int ldu, ulong vt, int ldvt, ulong work, int lwork, ulong rwork, ulong info);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnCreateParams")]
        internal static partial cusolverStatus_t cusolverDnCreateParams(out nint parameters);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnDestroyParams")]
        internal static partial cusolverStatus_t cusolverDnDestroyParams(nint parameters);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnXgesvdr_bufferSize")]
        internal static partial cusolverStatus_t cusolverDnXgesvdr_bufferSize(nint handle, nint parameters, sbyte jobu, sbyte jobv,
            long m, long n, long k, long p, long niters, cudaDataType dataTypeA, ulong a, long lda,
            cudaDataType dataTypeSrand, ulong srand, cudaDataType dataTypeUrand, ulong urand, long ldUrand,
            cudaDataType dataTypeVrand, ulong vrand, long ldVrand, cudaDataType computeType,
            out nuint workspaceBytesOnDevice, out nuint workspaceBytesOnHost);

        [LibraryImport(Libraries.Cusolver, EntryPoint = "cusolverDnXgesvdr")]
        internal static partial cusolverStatus_t cusolverDnXgesvdr(nint handle, nint parameters, sbyte jobu, sbyte jobv,
            long m, long n, long k, long p, long niters, cudaDataType dataTypeA, ulong a, long lda,
            cudaDataType dataTypeSrand, ulong srand, cudaDataType dataTypeUrand, ulong urand, long ldUrand,
            cudaDataType dataTypeVrand, ulong vrand, long ldVrand, cudaDataType computeType,
            ulong bufferOnDevice, nuint workspaceBytesOnDevice, nint bufferOnHost, nuint workspaceBytesOnHost, ulong info);
    }

    internal enum cusolverStatus_t
    {
        CUSOLVER_STATUS_SUCCESS = 0,
        CUSOLVER_STATUS_NOT_INITIALIZED = 1,
        CUSOLVER_STATUS_ALLOC_FAILED = 2,
        CUSOLVER_STATUS_INVALID_VALUE = 3,
        CUSOLVER_STATUS_ARCH_MISMATCH = 4,
        CUSOLVER_STATUS_EXECUTION_FAILED = 6,
        CUSOLVER_STATUS_INTERNAL_ERROR = 7,
        CUSOLVER_STATUS_NOT_SUPPORTED = 9,
    }

    internal enum cusolverEigMode_t { CUSOLVER_EIG_MODE_NOVECTOR = 0, CUSOLVER_EIG_MODE_VECTOR = 1 }
}
