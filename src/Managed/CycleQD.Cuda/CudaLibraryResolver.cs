using System.Reflection;
using System.Runtime.InteropServices;

namespace CycleQD.Cuda;

/// <summary>
/// Maps the binding's library names (<see cref="Interop.Libraries"/>) to the sonames CUDA 11, 12
/// and 13 install, searching the loader path, CUDA_HOME / CUDA_PATH, /usr/local/cuda*/lib64,
/// LD_LIBRARY_PATH and the Debian multiarch folder.
/// </summary>
internal static class CudaLibraryResolver
{
    private static int _installed;
    private static readonly Dictionary<string, string> Loaded = new(StringComparer.Ordinal);

    internal static void EnsureInstalled()
    {
        if (Interlocked.Exchange(ref _installed, 1) == 0)
            NativeLibrary.SetDllImportResolver(typeof(CudaLibraryResolver).Assembly, Resolve);
    }

    /// <summary>The file a library name resolved to (soname or full path), or null when it has not been loaded or cannot be.</summary>
    internal static string? Describe(string name)
    {
        EnsureInstalled();
        lock (Loaded)
            if (Loaded.TryGetValue(name, out var where)) return where;
        return TryLoad(name, out _, out var found) ? found : null;
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path) =>
        TryLoad(name, out nint handle, out _) ? handle : 0;

    /// <summary>Loads the newest soname of <paramref name="name"/> found in <see cref="SearchDirectories"/>.</summary>
    internal static bool TryLoad(string name, out nint handle, out string? found)
    {
        handle = 0; found = null;
        if (!Interop.Libraries.Sonames.TryGetValue(name, out var candidates)) return false;
        // Soname order first: a CUDA 13 library anywhere beats a CUDA 11 one earlier on the path.
        foreach (string soname in candidates)
            foreach (string dir in SearchDirectories())
            {
                string full = dir.Length == 0 ? soname : Path.Combine(dir, soname);
                if (dir.Length != 0 && !File.Exists(full)) continue;
                if (NativeLibrary.TryLoad(full, out handle))
                {
                    found = full;
                    lock (Loaded) Loaded[name] = full;
                    return true;
                }
            }
        return false;
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
            foreach (var d in Directory.GetDirectories("/usr/local", "cuda*").Order(StringComparer.Ordinal).Reverse())
                yield return Path.Combine(d, "lib64");
        foreach (var d in (Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            yield return d;
        yield return "/usr/lib/x86_64-linux-gnu";
    }
}
