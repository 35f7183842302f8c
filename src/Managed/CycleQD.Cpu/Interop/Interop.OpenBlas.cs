using System.Runtime.InteropServices;

namespace CycleQD.Cpu;

internal static partial class Interop
{
    internal static partial class OpenBlas
    {
        [LibraryImport(Libraries.OpenBlas, EntryPoint = "openblas_get_config")]
        internal static partial nint openblas_get_config();

        [LibraryImport(Libraries.OpenBlas, EntryPoint = "openblas_get_num_threads")]
        internal static partial int openblas_get_num_threads();
    }
}
