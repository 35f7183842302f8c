namespace CycleQD.Cuda;

internal static partial class Interop
{
    /// <summary>
    /// Library names used in <c>[LibraryImport]</c>; <see cref="CudaLibraryResolver"/> maps each to
    /// the sonames below, newest CUDA first.
    /// </summary>
    internal static class Libraries
    {
        internal const string CudaDriver = "cuda";
        internal const string Cublas = "cublas";
        internal const string Cusolver = "cusolver";

        /// <summary>
        /// Sonames per library. cuBLAS follows the CUDA major (13, 12, 11); cuSOLVER's own major is
        /// one behind from CUDA 12 on (CUDA 13: .so.12; CUDA 12 and 11: .so.11).
        /// </summary>
        internal static readonly IReadOnlyDictionary<string, string[]> Sonames = new Dictionary<string, string[]>(StringComparer.Ordinal)
        {
            [CudaDriver] = ["libcuda.so.1", "libcuda.so"],
            [Cublas] = ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11"],
            [Cusolver] = ["libcusolver.so.12", "libcusolver.so.11"],
        };
    }
}
