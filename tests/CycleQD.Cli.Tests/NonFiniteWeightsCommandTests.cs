using System.Text.Json.Nodes;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

/// <summary>NaN and infinite weights: counted by inspect, refused by run, resume, merge and generate; overflowed children survived by run.</summary>
public class NonFiniteWeightsCommandTests
{
    private const string Tensor = "model.layers.0.mlp.down_proj.weight";

    private static string TinySkills => Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");

    /// <summary>A copy of stories260K with two NaN and one −∞ in <see cref="Tensor"/>.</summary>
    private static string PoisonedStories(TempDir dir)
    {
        string model = PoisonedWeights.CopyFolder(TestPaths.Stories260K, dir.File("poisoned"));
        PoisonedWeights.SetValues(Path.Combine(model, "model.safetensors"), Tensor, (5, float.NaN), (6, float.NegativeInfinity), (100, float.NaN));
        return model;
    }

    private static string SingleErrorLine(CliResult r)
    {
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        return Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void Inspect_CleanModel_SaysEveryValueIsFinite()
    {
        var r = CliRunner.Run("inspect", TestPaths.Stories260K);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("\nfinite: all values of the 47 float tensors are finite (no NaN, no infinity)", r.Out);
    }

    [Fact]
    public void Inspect_PoisonedTensor_CountsPerTensor_SummaryLine_ErrorNamingFileAndTensor()
    {
        using var dir = new TempDir();
        string model = PoisonedStories(dir);
        var r = CliRunner.Run("inspect", model);
        var row = Assert.Single(r.Out.Split('\n'), l => l.StartsWith(Tensor + " ", StringComparison.Ordinal));
        Assert.EndsWith("2    1", row.TrimEnd());
        var clean = Assert.Single(r.Out.Split('\n'), l => l.StartsWith("model.layers.0.mlp.gate_proj.weight ", StringComparison.Ordinal));
        Assert.EndsWith("0    0", clean.TrimEnd());
        Assert.Contains("\nNOT FINITE: 1 of 47 float tensors hold NaN or infinite values (2 NaN, 1 infinite); run, merge and generate refuse this model", r.Out);
        Assert.Equal($"error: {Path.Combine(model, "model.safetensors")}: tensor '{Tensor}': 2 NaN and 1 infinite value(s), the first at element 5 of [64, 172]",
            SingleErrorLine(r));
    }

    [Fact]
    public void Generate_PoisonedModel_RefusedWithOneErrorLine_NothingPrinted()
    {
        using var dir = new TempDir();
        string model = PoisonedStories(dir);
        var r = CliRunner.Run("generate", "--model", model, "--prompt", "Once", "--max-new-tokens", "4");
        string line = SingleErrorLine(r);
        Assert.StartsWith($"error: {Path.Combine(model, "model.safetensors")}: tensor '{Tensor}': 2 NaN and 1 infinite value(s)", line);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public void Merge_PoisonedExpert_RefusedBeforeWritingAnything()
    {
        using var dir = new TempDir();
        string expert = PoisonedWeights.CopyFolder(Path.Combine(TinySkills, "expert-db"), dir.File("expert-db"));
        PoisonedWeights.SetValues(Path.Combine(expert, "model.safetensors"), Tensor, (0, float.PositiveInfinity));
        File.WriteAllText(dir.File("m.yaml"), $"""
            merge_method: task_arithmetic
            base_model: {Path.Combine(TinySkills, "base")}
            models:
              - model: {Path.Combine(TinySkills, "expert-code")}
              - model: {expert}
            parameters: {"{"} lambda: 0.5, weight: 1 {"}"}
            """);
        var r = CliRunner.Run("merge", dir.File("m.yaml"), "--out", dir.File("out"));
        Assert.Equal($"error: {Path.Combine(expert, "model.safetensors")}: tensor '{Tensor}': 0 NaN and 1 infinite value(s), the first at element 0 of [64, 172] " +
                     "(non-finite weights; check how this model was made)", SingleErrorLine(r));
        Assert.False(Directory.Exists(dir.File("out")) && Directory.EnumerateFileSystemEntries(dir.File("out")).Any());
    }

    [Fact]
    public void Merge_FiniteModelsWeightsOverflowFloat32_RefusedNamingTheTensor()
    {
        using var dir = new TempDir();
        // RMSNorm weights are near 1, so two of them weighted 3e38 each exceed float32's 3.4e38.
        File.WriteAllText(dir.File("m.yaml"), $"""
            merge_method: linear
            models:
              - model: {Path.Combine(TinySkills, "expert-code")}
                parameters: {"{"} weight: 3.0e38 {"}"}
              - model: {Path.Combine(TinySkills, "expert-db")}
                parameters: {"{"} weight: 3.0e38 {"}"}
            parameters: {"{"} normalize: false {"}"}
            """);
        var r = CliRunner.Run("merge", dir.File("m.yaml"), "--out", dir.File("out"));
        string line = SingleErrorLine(r);
        Assert.StartsWith($"error: {dir.File("m.yaml")}: tensor '", line);
        Assert.Contains("infinite value(s)", line);
        Assert.EndsWith("the weights or lambda overflow float32", line);
    }

    private static string TinySkillsExperiment(string baseDir, string expertsDir, int generations, double wMax) => $"""
        name: nonfinite
        seed: 5
        generations: {generations}
        tasks: [tinyskills/code, tinyskills/db, tinyskills/os]
        model:
          base: {baseDir}
          experts:
            tinyskills/code: {Path.Combine(expertsDir, "expert-code")}
            tinyskills/db: {Path.Combine(expertsDir, "expert-db")}
            tinyskills/os: {Path.Combine(expertsDir, "expert-os")}
        evaluation: {"{"} split: valid, tinyskills: {TinySkills}, limit: 4 {"}"}
        archive:
          bins: 15
          # Four prompts per skill can leave every expert at 0 on a skill: fixed bounds keep the bins usable.
          bounds: {"{"} tinyskills/code: [0, 1], tinyskills/db: [0, 1], tinyskills/os: [0, 1] {"}"}
        mutation: {"{"} kind: svd, svd_scale_max: {wMax.ToString(System.Globalization.CultureInfo.InvariantCulture)} {"}"}
        final_merge: {"{"} enabled: false {"}"}
        """;

    private static string CopyExperts(TempDir dir)
    {
        string experts = dir.File("experts");
        foreach (var e in new[] { "expert-code", "expert-db", "expert-os" })
            PoisonedWeights.CopyFolder(Path.Combine(TinySkills, e), Path.Combine(experts, e));
        return experts;
    }

    [Fact]
    public void Run_PoisonedExpert_RefusedBeforeTheRunDirectoryExists()
    {
        using var dir = new TempDir();
        string experts = CopyExperts(dir);
        string poisoned = Path.Combine(experts, "expert-os", "model.safetensors");
        PoisonedWeights.SetValues(poisoned, Tensor, (3, float.NaN));
        File.WriteAllText(dir.File("exp.yaml"), TinySkillsExperiment(Path.Combine(TinySkills, "base"), experts, 2, 0.3));
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"));
        Assert.StartsWith($"error: {poisoned}: tensor '{Tensor}': 1 NaN and 0 infinite value(s), the first at element 3", SingleErrorLine(r));
        Assert.False(Directory.Exists(dir.File("run")));
    }

    [Fact]
    public void Resume_ExpertPoisonedAfterTheStart_Refused()
    {
        using var dir = new TempDir();
        string experts = CopyExperts(dir);
        File.WriteAllText(dir.File("exp.yaml"), TinySkillsExperiment(Path.Combine(TinySkills, "base"), experts, 1, 0.3));
        var first = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"));
        Assert.True(first.ExitCode == 0, first.Err + first.Out);
        string poisoned = Path.Combine(experts, "expert-code", "model.safetensors");
        PoisonedWeights.SetValues(poisoned, Tensor, (7, float.PositiveInfinity));
        var r = CliRunner.Run("resume", dir.File("run"), "--generations", "2");
        Assert.StartsWith($"error: {poisoned}: tensor '{Tensor}': 0 NaN and 1 infinite value(s), the first at element 7", SingleErrorLine(r));
    }

    /// <summary>
    /// The code expert holds float32's largest value in one weight: the expert is finite, but the SVD
    /// mutation (w_max 4) scales that component of a child's task vector past float32. Those children
    /// are reported, scored 0 and not archived; the run reaches its target.
    /// </summary>
    [Fact]
    public void Run_ChildOverflowsInTheSvdMutation_WarnsRecordsAndContinues()
    {
        using var dir = new TempDir();
        string experts = CopyExperts(dir);
        PoisonedWeights.SetValues(Path.Combine(experts, "expert-code", "model.safetensors"), Tensor, (10, float.MaxValue));
        File.WriteAllText(dir.File("exp.yaml"), TinySkillsExperiment(Path.Combine(TinySkills, "base"), experts, 6, 4.0));
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"));
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        var warnings = r.Out.Split('\n').Where(l => l.StartsWith("warning: generation ", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(warnings);
        Assert.All(warnings, w => Assert.Contains($"the child's weights are not finite (tensor '{Tensor}': ", w));
        Assert.All(warnings, w => Assert.EndsWith("; scored 0, not archived", w));

        var metrics = File.ReadAllLines(dir.File("run/metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(6, metrics.Count);
        var bad = metrics.Where(m => m["non_finite"] is not null).ToList();
        Assert.Equal(warnings.Count, bad.Count);
        foreach (var m in bad)
        {
            Assert.StartsWith($"tensor '{Tensor}': ", m["non_finite"]!.GetValue<string>());
            Assert.Null(m["child"]);
            Assert.Equal(0, m["cells_improved"]!.GetValue<int>());
            Assert.All(m["scores"]!.AsObject(), kv => Assert.Equal(0.0, kv.Value!.GetValue<double>()));
        }
        // Every line carries the field, null for a finite child.
        Assert.All(metrics, m => Assert.True(m.AsObject().ContainsKey("non_finite")));
        Assert.Contains(metrics, m => m["non_finite"] is null);
    }
}
