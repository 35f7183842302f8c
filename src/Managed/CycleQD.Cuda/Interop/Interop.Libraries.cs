namespace CycleQD.Cuda;

internal static partial class Interop
{
    /// <summary>Library names; the resolver in <see cref="CudaLibraryResolver"/> maps them to sonames.</summary>
    internal static class Libraries
    {
        internal const string CudaDriver = "cuda";
    }
}
