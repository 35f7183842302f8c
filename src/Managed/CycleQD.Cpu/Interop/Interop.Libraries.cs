namespace CycleQD.Cpu;

internal static partial class Interop
{
    /// <summary>Shared-library names, as Debian 12 installs them (libopenblas0-pthread, liblapacke).</summary>
    internal static class Libraries
    {
        // cblas_* come from OpenBLAS itself; OpenBLAS's Debian build exports no LAPACKE_*, which
        // come from the reference liblapacke (itself on top of whichever LAPACK is selected).
        internal const string OpenBlas = "libopenblas.so.0";
        internal const string Lapacke = "liblapacke.so.3";
    }
}
