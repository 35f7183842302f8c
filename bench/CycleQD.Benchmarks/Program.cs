using BenchmarkDotNet.Running;

namespace CycleQD.Benchmarks;

internal static class Program
{
    // ./build.sh bench runs every benchmark; pass BenchmarkDotNet arguments (e.g. --filter '*Svd*') to pick.
    private static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
