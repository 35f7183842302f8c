using CycleQD.Testing;
namespace CycleQD.Runs.Tests;

/// <summary>Small experiment files for the tests.</summary>
internal static class Experiments
{
    /// <summary>A synthetic experiment small enough that tens of generations take a second or two.</summary>
    public static string Synthetic(int generations = 30, int inFlight = 1, string mutation = "svd", int seed = 3) => $"""
        name: test
        seed: {seed}
        generations: {generations}
        tasks: [a, b, c]
        model:
          synthetic: {"{"} layers: 2, rows: 24, cols: 16, dtype: bf16, seed: 5 {"}"}
        archive: {"{"} bins: 6 {"}"}
        mutation: {"{"} kind: {mutation}, sigma: 0.001 {"}"}
        in_flight: {inFlight}
        """;

    public static string Write(TempDir dir, string name, string text)
    {
        string p = dir.File(name);
        File.WriteAllText(p, text);
        return p;
    }
}
