using System.CommandLine;
using CycleQD.Cpu;

namespace CycleQD.Cli;

/// <summary>
/// <c>--threads N</c>, one meaning on every verb: the CPU threads of the two native libraries that
/// compute. ONNX Runtime takes N as the intra-op threads of each session (one operator's work
/// split N ways; its default is one per core); OpenBLAS takes N for BLAS and the LAPACK SVD of the
/// CPU backend (its default: every core, or OPENBLAS_NUM_THREADS). The managed merge kernels and the
/// NaN/Inf scan run on the .NET thread pool, which no option changes once the process runs: on a
/// verb that computes only there (merge, inspect) or only on the GPU, <c>--threads</c> is refused
/// with that said, rather than ignored; DOTNET_PROCESSOR_COUNT=N in the environment limits the pool.
/// </summary>
internal static class ThreadsOption
{
    /// <summary>The option for a verb; <paramref name="effect"/> says what N sets there.</summary>
    public static Option<int?> Create(string effect) =>
        NumericOptions.OptionalWhole<int>("--threads", effect + " (default: the libraries' own, one per core).", NumericRange.AtLeast(1));

    /// <summary>The option for a verb where it has no effect: giving it is an error that says why.</summary>
    public static Option<int?> CreateRefused(string why) =>
        NumericOptions.OptionalWhole<int>("--threads", $"Not used: {why}; giving it is an error.", NumericRange.AtLeast(1));

    /// <summary>Throws the refusal when <paramref name="threads"/> was given.</summary>
    /// <exception cref="CliUsageException">--threads was given.</exception>
    public static void Refuse(int? threads, string why)
    {
        if (threads is not null) throw new CliUsageException($"--threads has no effect here: {why}");
    }

    /// <summary>Why --threads does nothing for the managed loops of merge and inspect.</summary>
    public const string ManagedLoops = "this verb computes on the .NET thread pool, not in OpenBLAS or ONNX Runtime (set DOTNET_PROCESSOR_COUNT=N in the environment to limit it)";

    /// <summary>Sets OpenBLAS's threads when <paramref name="threads"/> is given.</summary>
    public static void ApplyToOpenBlas(int? threads)
    {
        if (threads is { } n) CpuNativeLibraries.SetOpenBlasThreads(n);
    }
}
