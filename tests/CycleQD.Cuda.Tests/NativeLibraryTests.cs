using System.Reflection;
using System.Runtime.InteropServices;
using CycleQD.Testing;

namespace CycleQD.Cuda.Tests;

public class NativeLibraryTests
{
    [Fact]
    public void Sonames_CoverCuda11To13_NewestFirst()
    {
        Assert.Equal(["libcublas.so.13", "libcublas.so.12", "libcublas.so.11"], Interop.Libraries.Sonames[Interop.Libraries.Cublas]);
        // cuSOLVER's soname major: 12 in CUDA 13, 11 in CUDA 12 and 11.
        Assert.Equal(["libcusolver.so.12", "libcusolver.so.11"], Interop.Libraries.Sonames[Interop.Libraries.Cusolver]);
        Assert.Equal("libcuda.so.1", Interop.Libraries.Sonames[Interop.Libraries.CudaDriver][0]);
    }

    [Fact]
    public void SearchDirectories_IncludeCudaHomeAndLdLibraryPath()
    {
        string home = Path.Combine(Path.GetTempPath(), "cuda-home-" + Guid.NewGuid().ToString("N"));
        string extra = Path.Combine(Path.GetTempPath(), "ld-" + Guid.NewGuid().ToString("N"));
        string? oldHome = Environment.GetEnvironmentVariable("CUDA_HOME");
        string? oldLd = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH");
        try
        {
            Environment.SetEnvironmentVariable("CUDA_HOME", home);
            Environment.SetEnvironmentVariable("LD_LIBRARY_PATH", extra + ":" + oldLd);
            var dirs = CudaLibraryResolver.SearchDirectories().ToList();
            Assert.Equal("", dirs[0]);
            Assert.Contains(Path.Combine(home, "lib64"), dirs);
            Assert.Contains(extra, dirs);
            Assert.True(dirs.IndexOf(Path.Combine(home, "lib64")) < dirs.IndexOf(extra), "CUDA_HOME is searched before LD_LIBRARY_PATH");
        }
        finally
        {
            Environment.SetEnvironmentVariable("CUDA_HOME", oldHome);
            Environment.SetEnvironmentVariable("LD_LIBRARY_PATH", oldLd);
        }
    }

    public static TheoryData<string, Type> Families => new()
    {
        { Interop.Libraries.CudaDriver, typeof(Interop.CudaDriver) },
        { Interop.Libraries.Cublas, typeof(Interop.Cublas) },
        { Interop.Libraries.Cusolver, typeof(Interop.Cusolver) },
    };

    [Theory]
    [MemberData(nameof(Families))]
    public void EveryBoundEntryPoint_IsExportedByTheResolvedLibrary(string library, Type family)
    {
        // Needs the library, not a GPU: Debian's toolkit (./build.sh setup) installs CUDA 11.8's.
        bool loaded = CudaLibraryResolver.TryLoad(library, out nint handle, out string? found);
        MachineRequirement.RequireCudaToolkit(loaded, $"{string.Join(" / ", Interop.Libraries.Sonames[library])} not installed on this machine");
        var entries = family.GetMethods(BindingFlags.Static | BindingFlags.NonPublic)
            .Select(m => m.GetCustomAttribute<LibraryImportAttribute>())
            .Where(a => a is not null)
            .Select(a => a!.EntryPoint!)
            .ToList();
        Assert.NotEmpty(entries);
        var missing = entries.Where(e => !NativeLibrary.TryGetExport(handle, e, out _)).ToList();
        Assert.True(missing.Count == 0, $"{found} lacks {string.Join(", ", missing)}");
    }

    [Fact]
    public void Describe_NamesTheLoadedSoname()
    {
        string? where = CudaLibraryResolver.Describe(Interop.Libraries.Cublas);
        MachineRequirement.RequireCudaToolkit(where is not null, "no cuBLAS installed on this machine");
        Assert.Matches(@"libcublas\.so\.1[123]$", where!);
    }

    [Fact]
    public void MathLibraries_ReportWhatTheResolverFinds()
    {
        var (cublas, cusolver) = CudaDeviceProbe.MathLibraries();
        Assert.Equal(CudaLibraryResolver.TryLoad(Interop.Libraries.Cublas, out _, out _), cublas is not null);
        Assert.Equal(CudaLibraryResolver.TryLoad(Interop.Libraries.Cusolver, out _, out _), cusolver is not null);
        if (cusolver is not null) Assert.Matches(@"libcusolver\.so\.1[12]$", cusolver);
    }
}
