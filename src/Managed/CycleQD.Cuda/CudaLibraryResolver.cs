using System.Reflection;
using System.Runtime.InteropServices;

namespace CycleQD.Cuda;

/// <summary>
/// Maps the binding's library names to the sonames CUDA 11, 12 and 13 install, searching the
/// loader path, CUDA_HOME, /usr/local/cuda*/lib64 and LD_LIBRARY_PATH.
/// </summary>
internal static class CudaLibraryResolver
{
    private static readonly Dictionary<string, string[]> Sonames = new(StringComparer.Ordinal)
    {
        [Interop.Libraries.CudaDriver] = ["libcuda.so.1", "libcuda.so"],
    };

    private static int _installed;

    internal static void EnsureInstalled()
    {
        if (Interlocked.Exchange(ref _installed, 1) == 0)
            NativeLibrary.SetDllImportResolver(typeof(CudaLibraryResolver).Assembly, Resolve);
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (!Sonames.TryGetValue(name, out var candidates)) return 0;
        foreach (string dir in SearchDirectories())
            foreach (string soname in candidates)
            {
                string full = dir.Length == 0 ? soname : Path.Combine(dir, soname);
                if (NativeLibrary.TryLoad(full, out nint handle)) return handle;
            }
        return 0;
    }

    /// <summary>"" (the loader's own search) first, then the CUDA install folders.</summary>
    internal static IEnumerable<string> SearchDirectories()
    {
        yield return "";
        foreach (var env in new[] { "CUDA_HOME", "CUDA_PATH" })
        {
            string? home = Environment.GetEnvironmentVariable(env);
            if (!string.IsNullOrEmpty(home)) { yield return Path.Combine(home, "lib64"); yield return Path.Combine(home, "lib"); }
        }
        if (Directory.Exists("/usr/local"))
            foreach (var d in Directory.GetDirectories("/usr/local", "cuda*").Order(StringComparer.Ordinal))
                yield return Path.Combine(d, "lib64");
        foreach (var d in (Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            yield return d;
        yield return "/usr/lib/x86_64-linux-gnu";
    }
}
