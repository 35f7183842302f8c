namespace CycleQD.Cpu.Tests;

/// <summary>What a host without OpenBLAS/LAPACKE is told: the library, why, and which Debian packages bring it.</summary>
public class NativeLibraryMessageTests
{
    [Fact]
    public void ThrowIfMissing_UnloadableLibrary_NamesItAndTheDebianPackages()
    {
        var missing = CpuNativeLibraries.Probe("libcycleqd-absent.so.9", "cblas_sgemm");
        Assert.False(missing.Found);
        var e = Assert.Throws<CpuLibraryUnavailableException>(() =>
            CpuNativeLibraries.ThrowIfMissing([new NativeLibraryStatus("libopenblas.so.0", true, "ok"), missing]));
        Assert.Equal("libcycleqd-absent.so.9", e.Library);
        Assert.Contains("libcycleqd-absent.so.9 cannot be loaded (Debian: ./build.sh setup installs it)", e.Message);
        Assert.Contains("libopenblas0-pthread, liblapacke", e.Message);
        Assert.IsAssignableFrom<DllNotFoundException>(e);
    }

    [Fact]
    public void EnsureLinearAlgebra_OnThisMachine_AgreesWithTheProbes()
    {
        bool present = CpuNativeLibraries.ProbeOpenBlas().Found && CpuNativeLibraries.ProbeLapacke().Found;
        if (present) CpuNativeLibraries.EnsureLinearAlgebra();
        else Assert.Throws<CpuLibraryUnavailableException>(CpuNativeLibraries.EnsureLinearAlgebra);
    }
}
