using System.Runtime.InteropServices;

namespace CycleQD.Cpu;

internal static partial class Interop
{
    internal static partial class OpenBlas
    {
        // CBLAS_ORDER and CBLAS_TRANSPOSE values from cblas.h.
        internal const int RowMajor = 101;
        internal const int NoTrans = 111;
        internal const int Trans = 112;

        [LibraryImport(Libraries.OpenBlas, EntryPoint = "openblas_get_config")]
        internal static partial nint openblas_get_config();

        [LibraryImport(Libraries.OpenBlas, EntryPoint = "openblas_get_num_threads")]
        internal static partial int openblas_get_num_threads();

        [LibraryImport(Libraries.OpenBlas, EntryPoint = "openblas_set_num_threads")]
        internal static partial void openblas_set_num_threads(int threads);

        /// <summary>C = alpha·op(A)·op(B) + beta·C; blasint is 32-bit in Debian's libopenblas0 (not the 64-bit-index build).</summary>
        [LibraryImport(Libraries.OpenBlas, EntryPoint = "cblas_sgemm")]
        internal static unsafe partial void cblas_sgemm(int order, int transA, int transB, int m, int n, int k,
            float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);
    }
}
