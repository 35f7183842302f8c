using System.Runtime.InteropServices;

namespace CycleQD.Cpu;

internal static partial class Interop
{
    internal static partial class Lapacke
    {
        internal const int RowMajor = 101;

        /// <summary>Divide-and-conquer SVD; jobz is an ASCII letter ('S': thin U and Vᵀ). Returns info (0 = success).</summary>
        [LibraryImport(Libraries.Lapacke, EntryPoint = "LAPACKE_sgesdd")]
        internal static unsafe partial int LAPACKE_sgesdd(int matrixLayout, byte jobz, int m, int n, float* a, int lda,
            float* s, float* u, int ldu, float* vt, int ldvt);

        /// <summary>QR factorisation (Householder reflectors in a and tau).</summary>
        [LibraryImport(Libraries.Lapacke, EntryPoint = "LAPACKE_sgeqrf")]
        internal static unsafe partial int LAPACKE_sgeqrf(int matrixLayout, int m, int n, float* a, int lda, float* tau);

        /// <summary>Forms the m×n Q of a QR factorisation from sgeqrf's output.</summary>
        [LibraryImport(Libraries.Lapacke, EntryPoint = "LAPACKE_sorgqr")]
        internal static unsafe partial int LAPACKE_sorgqr(int matrixLayout, int m, int n, int k, float* a, int lda, float* tau);
    }
}
