using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Runtime;

/// <summary>
/// CycleQD's own operators for ONNX Runtime's CPU provider (native/ortops, built with this assembly
/// into <c>libcycleqd_ortops.so</c>): <c>CachedAttention</c> in domain <see cref="Domain"/>, which the
/// fused float32 CPU graph uses in place of GroupQueryAttention (docs/perf.md).
/// </summary>
public static class CpuOperators
{
    /// <summary>The operators' ONNX domain.</summary>
    public const string Domain = "ai.cycleqd";

    /// <summary>The library's file name.</summary>
    public const string LibraryName = "libcycleqd_ortops.so";

    private static readonly Lazy<(string? Path, string? Why)> Found = new(Find);

    /// <summary>Whether the library was found and this CPU can run it.</summary>
    public static bool IsAvailable => Found.Value.Path is not null;

    /// <summary>The library's path, or null when it is not available.</summary>
    public static string? LibraryPath => Found.Value.Path;

    /// <summary>Why the library is not available (null when it is): the folders searched, or the CPU feature it needs.</summary>
    public static string? WhyUnavailable => Found.Value.Why;

    /// <summary>Registers the operators with <paramref name="options"/>.</summary>
    /// <exception cref="InvalidOperationException">the library is not available, or ONNX Runtime refuses it; the message says why and names the way back to GroupQueryAttention.</exception>
    internal static void Register(SessionOptions options)
    {
        var (path, why) = Found.Value;
        if (path is null) throw new InvalidOperationException(why);
        try
        {
            options.RegisterCustomOpLibrary(path);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidOperationException(
                $"{path} could not be registered with ONNX Runtime: {e.Message.Trim()} " +
                $"(set {FusedLlamaSession.CpuAttentionVariable}=group-query to use ONNX Runtime's GroupQueryAttention)", e);
        }
    }

    private static readonly Lock SessionGate = new();

    /// <summary>A session of <paramref name="model"/> with the operators registered in <paramref name="options"/>.</summary>
    /// <remarks>
    /// Sessions are created one at a time: ONNX Runtime enters a custom operator domain into a
    /// process-wide table when a session first uses it, and two sessions doing that at once fail
    /// (one of them with "the domain is already exist", seen when tests opened sessions in parallel).
    /// </remarks>
    /// <exception cref="InvalidOperationException">as <see cref="Register"/>.</exception>
    internal static InferenceSession CreateSession(byte[] model, SessionOptions options)
    {
        Register(options);
        lock (SessionGate) return new InferenceSession(model, options);
    }

    private static (string? Path, string? Why) Find()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return (null, $"{LibraryName} is built for Linux x64 only (this is {RuntimeInformation.OSDescription}, {RuntimeInformation.ProcessArchitecture})");
        // Built for x86-64-v3: without AVX2 and FMA it would stop the process on its first instruction.
        if (!Avx2.IsSupported || !Fma.IsSupported)
            return (null, $"{LibraryName} needs a CPU with AVX2 and FMA, which this one lacks");
        var folders = new List<string> { AppContext.BaseDirectory };
        string? assemblyFolder = Path.GetDirectoryName(typeof(CpuOperators).Assembly.Location);
        if (!string.IsNullOrEmpty(assemblyFolder)) folders.Add(assemblyFolder);
        // The native folders the host resolved from the application's dependencies (a package's runtimes/linux-x64/native).
        if (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") is string searched)
            folders.AddRange(searched.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        folders.Add(Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native"));
        return FindIn(folders);
    }

    /// <summary>
    /// The first <see cref="LibraryName"/> in <paramref name="folders"/>, loaded once to make sure it
    /// can be (a library that does not load would otherwise fail every session that registers it).
    /// </summary>
    internal static (string? Path, string? Why) FindIn(IEnumerable<string> folders)
    {
        var distinct = folders.Distinct(StringComparer.Ordinal).ToList();
        foreach (var folder in distinct)
        {
            string candidate = Path.Combine(folder, LibraryName);
            if (!File.Exists(candidate)) continue;
            try
            {
                // Built with -z nodelete: once loaded it stays, as ONNX Runtime's registrations expect.
                NativeLibrary.Load(candidate);
                return (candidate, null);
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
            {
                return (null, $"{candidate} cannot be loaded: {e.Message}");
            }
        }
        return (null, $"{LibraryName} not found in {string.Join(", ", distinct)} (the build compiles it when a C++ compiler is present)");
    }
}
