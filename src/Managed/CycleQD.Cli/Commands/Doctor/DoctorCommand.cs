using System.CommandLine;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using CycleQD.Cpu;
using CycleQD.Cuda;
using CycleQD.Onnx;

namespace CycleQD.Cli.Commands.Doctor;

/// <summary>`cycleqd doctor`: what this machine offers the engine. Always exits 0; problems are reported, not thrown.</summary>
internal static class DoctorCommand
{
    public static Command Create()
    {
        var cmd = new Command("doctor", "Report CPU/SIMD, BLAS/LAPACK, CUDA driver and GPUs, nvcc and embedded PTX, ONNX Runtime.");
        cmd.SetAction(parse => Run(parse.InvocationConfiguration.Output));
        return cmd;
    }

    internal static int Run(TextWriter o)
    {
        void Line(string key, string value) => o.WriteLine($"  {key,-14}{value}");

        o.WriteLine("CycleQD.Native doctor");
        Line("OS", $"{OsName()} ({RuntimeInformation.OSArchitecture}), .NET {Environment.Version}");
        Line("CPU", $"{CpuModel()}, {Environment.ProcessorCount} logical cores");
        Line("SIMD", $"Vector<float> {Vector<float>.Count * 32} bits; AVX2 {YesNo(Avx2.IsSupported)}, FMA {YesNo(Fma.IsSupported)}, AVX-512F {YesNo(Avx512F.IsSupported)}");

        var blas = CpuNativeLibraries.ProbeOpenBlas();
        Line("OpenBLAS", (blas.Found ? "found " : "MISSING ") + $"{blas.Library}: {blas.Detail}");
        var lapacke = CpuNativeLibraries.ProbeLapacke();
        Line("LAPACKE", (lapacke.Found ? "found " : "MISSING ") + $"{lapacke.Library}: {lapacke.Detail}");

        var cuda = CudaDeviceProbe.Probe();
        if (cuda.Available)
        {
            Line("CUDA driver", $"version {cuda.DriverVersion}");
            foreach (var d in cuda.Devices)
                Line($"GPU {d.Ordinal}", $"{d.Name}, {d.TotalMemoryBytes / (1024.0 * 1024 * 1024):F1} GiB, compute {d.ComputeCapability}, {d.Multiprocessors} SMs");
        }
        else
        {
            Line("CUDA driver", cuda.DriverVersion is null ? "not available" : $"version {cuda.DriverVersion}");
            Line("GPU", $"none: {cuda.Reason}; the CPU backend will be used");
        }

        string? nvcc = NvccLocator.Find();
        Line("nvcc", nvcc is null ? "not found (kernels are built only where nvcc exists)" : $"{nvcc} ({NvccLocator.Version(nvcc) ?? "version unknown"})");
        var ptx = PtxCatalog.List();
        Line("PTX", ptx.Count == 0
            ? "none embedded (this build had no nvcc)"
            : $"{ptx.Count} modules embedded: " + string.Join(", ", ptx.Select(p => $"{p.Name} ({p.Target}, ISA {p.IsaVersion})")));

        try
        {
            var ort = OnnxRuntimeInfo.Query();
            Line("ONNX Runtime", $"{ort.Version}; providers compiled in: {string.Join(", ", ort.Providers)}");
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException)
        {
            Line("ONNX Runtime", "cannot be loaded: " + (e.InnerException ?? e).Message);
        }
        Line("ORT on CUDA", OrtCudaStatus(AppContext.BaseDirectory));
        Line("CPU attention", Onnx.Runtime.CpuOperators.IsAvailable
            ? $"CachedAttention and SiluMul ({Onnx.Runtime.CpuOperators.LibraryPath}) in the fused float32 CPU graph"
            : $"ONNX Runtime's GroupQueryAttention: {Onnx.Runtime.CpuOperators.WhyUnavailable}");
        var (lanes, threads) = Onnx.Runtime.LlamaModel.LanePlan(Onnx.Runtime.InferenceDevice.Cpu, 0, 0, 0, Environment.ProcessorCount);
        Line("CPU lanes", lanes > 1
            ? $"{lanes} × {threads} thread{(threads == 1 ? "" : "s")}: a Llama model of at most {Onnx.Runtime.LlamaModel.LaneWeightBytes >> 20} MiB decodes {lanes} batches side by side (larger ones: one session, every core; --threads N or evaluation.lanes sets them)"
            : $"1 ({Environment.ProcessorCount} core{(Environment.ProcessorCount == 1 ? "" : "s")}): one session decodes");
        return 0;
    }

    /// <summary>The provider library ONNX Runtime loads for --device cuda, from the folder of libonnxruntime.so.</summary>
    internal const string CudaProviderLibrary = "libonnxruntime_providers_cuda.so";

    /// <summary>
    /// Whether model evaluation can run on ONNX Runtime's CUDA provider here: its library beside the
    /// binary (device bundles carry it apart) and the CUDA libraries it loads.
    /// </summary>
    internal static string OrtCudaStatus(string binaryFolder)
    {
        var missing = new List<string>();
        if (!File.Exists(Path.Combine(binaryFolder, CudaProviderLibrary))) missing.Add($"{CudaProviderLibrary} (not in {binaryFolder})");
        foreach (string lib in Onnx.Runtime.LlamaSession.CudaProviderLibraries)
        {
            if (NativeLibrary.TryLoad(lib, out nint h)) NativeLibrary.Free(h);
            else missing.Add(lib);
        }
        return missing.Count == 0
            ? "ready: the CUDA provider and the libraries it loads are found (--device cuda evaluates on the GPU)"
            : $"not ready: {string.Join(", ", missing)} missing; --device cuda stops before generation 0 with this list (the CPU provider still works)";
    }

    private static string YesNo(bool b) => b ? "yes" : "no";

    private static string OsName()
    {
        try
        {
            var line = File.ReadLines("/etc/os-release").FirstOrDefault(l => l.StartsWith("PRETTY_NAME=", StringComparison.Ordinal));
            if (line != null) return line["PRETTY_NAME=".Length..].Trim('"');
        }
        catch (IOException) { }
        return RuntimeInformation.OSDescription;
    }

    private static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            if (line != null) return line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { }
        return RuntimeInformation.ProcessArchitecture.ToString();
    }
}
