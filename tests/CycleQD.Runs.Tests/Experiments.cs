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

    /// <summary>
    /// Synthesizes a tiny bf16 base and three experts in dir/set and writes dir/NAME: CycleQD on the three
    /// TinySkills skills with them, <paramref name="limit"/> prompts per task, explicit bounds (random
    /// models score 0, which leaves the paper's bounds empty), no final stage. Returns the file's path.
    /// </summary>
    public static string Synthesized(TempDir dir, int generations, int limit, string name = "exp.yaml")
    {
        string set = dir.File("set");
        Onnx.Synthesis.LlamaSynthesizer.Write(set, new Onnx.Synthesis.SynthesisOptions { Shape = "tiny", Experts = 3, Threads = 2 },
            cancellationToken: TestContext.Current.CancellationToken);
        string models = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        return Write(dir, name, $"""
            name: synthesized
            seed: 1
            generations: {generations}
            tasks: [tinyskills/code, tinyskills/db, tinyskills/os]
            model:
              base: {set}/base
              experts: {"{"} tinyskills/code: {set}/expert-1, tinyskills/db: {set}/expert-2, tinyskills/os: {set}/expert-3 {"}"}
            evaluation: {"{"} split: valid, limit: {limit}, tinyskills: {models} {"}"}
            archive: {"{"} bins: 4, bounds: {"{"} tinyskills/code: [0, 1], tinyskills/db: [0, 1], tinyskills/os: [0, 1] {"}"} {"}"}
            final_merge: {"{"} enabled: false {"}"}
            """);
    }

    public static string Write(TempDir dir, string name, string text)
    {
        string p = dir.File(name);
        File.WriteAllText(p, text);
        return p;
    }
}
