using System.Runtime.InteropServices;

namespace CycleQD.Cpu;

/// <summary>Whether a native library can be loaded and exports a given symbol.</summary>
/// <param name="Library">Library name that was tried.</param>
/// <param name="Found">True when it loaded and the symbol resolved.</param>
/// <param name="Detail">Version/config text when found, else why not.</param>
public sealed record NativeLibraryStatus(string Library, bool Found, string Detail);

/// <summary>Probes the CPU backend's native dependencies without throwing.</summary>
public static class CpuNativeLibraries
{
    /// <summary>OpenBLAS (cblas_sgemm), with its build configuration when found.</summary>
    public static NativeLibraryStatus ProbeOpenBlas()
    {
        var status = Probe(Interop.Libraries.OpenBlas, "cblas_sgemm");
        if (!status.Found) return status;
        string config = Marshal.PtrToStringUTF8(Interop.OpenBlas.openblas_get_config()) ?? "";
        return status with { Detail = $"{config.Trim()}; {Interop.OpenBlas.openblas_get_num_threads()} threads" };
    }

    /// <summary>
    /// Sets the threads OpenBLAS uses for BLAS calls and for the LAPACK routines it provides
    /// (Debian's liblapacke runs sgesdd through OpenBLAS's LAPACK): the CPU backend's SVD. 0 keeps
    /// its default (every core, or OPENBLAS_NUM_THREADS). Does nothing when OpenBLAS cannot be loaded
    /// (the CPU backend then reports it when it is first used).
    /// </summary>
    public static void SetOpenBlasThreads(int threads)
    {
        if (threads <= 0 || !ProbeOpenBlas().Found) return;
        Interop.OpenBlas.openblas_set_num_threads(threads);
    }

    /// <summary>OpenBLAS's current thread count, or null when it cannot be loaded.</summary>
    public static int? OpenBlasThreads() => ProbeOpenBlas().Found ? Interop.OpenBlas.openblas_get_num_threads() : null;

    /// <summary>LAPACKE (LAPACKE_sgesdd).</summary>
    public static NativeLibraryStatus ProbeLapacke() => Probe(Interop.Libraries.Lapacke, "LAPACKE_sgesdd");

    private static readonly Lazy<NativeLibraryStatus[]> LinearAlgebra = new(() => [ProbeOpenBlas(), ProbeLapacke()]);

    /// <summary>
    /// Throws <see cref="CpuLibraryUnavailableException"/>, with the line <c>cycleqd doctor</c> shows,
    /// when OpenBLAS or LAPACKE cannot be used; the CPU backend calls it before its SVD mutation so
    /// a host without them gets that message instead of a bare loader error. Probed once per process.
    /// </summary>
    public static void EnsureLinearAlgebra() => ThrowIfMissing(LinearAlgebra.Value);

    internal static void ThrowIfMissing(IEnumerable<NativeLibraryStatus> statuses)
    {
        var missing = statuses.Where(s => !s.Found).ToList();
        if (missing.Count > 0)
            throw new CpuLibraryUnavailableException(missing[0].Library,
                "the CPU backend's SVD mutation needs OpenBLAS and LAPACKE: " + string.Join("; ", missing.Select(s => $"{s.Library} {s.Detail}"))
                + " (Debian packages: libopenblas0-pthread, liblapacke)");
    }

    internal static NativeLibraryStatus Probe(string library, string symbol)
    {
        if (!NativeLibrary.TryLoad(library, typeof(CpuNativeLibraries).Assembly, null, out nint handle))
            return new NativeLibraryStatus(library, false, "cannot be loaded (Debian: ./build.sh setup installs it)");
        return NativeLibrary.TryGetExport(handle, symbol, out _)
            ? new NativeLibraryStatus(library, true, $"exports {symbol}")
            : new NativeLibraryStatus(library, false, $"loaded but has no {symbol}");
    }
}

/// <summary>
/// A native library of the CPU backend (OpenBLAS, LAPACKE) is missing or unusable. Derives from
/// <see cref="DllNotFoundException"/> so callers that handle a missing native library keep doing so.
/// </summary>
public sealed class CpuLibraryUnavailableException : DllNotFoundException
{
    /// <summary>Creates the exception for <paramref name="library"/> with the full explanation in <paramref name="message"/>.</summary>
    public CpuLibraryUnavailableException(string library, string message) : base(message) => Library = library;

    /// <summary>The first library that could not be used (e.g. "liblapacke.so.3").</summary>
    public string Library { get; }
}
