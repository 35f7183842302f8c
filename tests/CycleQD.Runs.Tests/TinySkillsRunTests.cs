using System.Text.Json;
using System.Text.Json.Nodes;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

/// <summary>CycleQD on the real TinySkills instruct models, scored by the ONNX generator on the valid split.</summary>
public class TinySkillsRunTests
{
    private static string Experiment(string tinyskills, int generations)
    {
        string set = Path.Combine(tinyskills, "instruct");
        return $"""
            name: tinyskills-test
            seed: 5
            generations: {generations}
            tasks: [tinyskills/code, tinyskills/db, tinyskills/os]
            model:
              base: {Path.Combine(set, "base")}
              experts:
                tinyskills/code: {Path.Combine(set, "expert-code")}
                tinyskills/db: {Path.Combine(set, "expert-db")}
                tinyskills/os: {Path.Combine(set, "expert-os")}
            evaluation: {"{"} split: valid, tinyskills: {tinyskills} {"}"}
            archive: {"{"} bins: 15 {"}"}
            sampling: {"{"} kind: elite {"}"}
            mutation: {"{"} kind: svd {"}"}
            """;
    }

    [Fact]
    public void Run_InstructSet_ExpertScoresMatchPublishedValidAccuracies_ResumeIdentical()
    {
        string ts = TestPaths.RequireSharedData("models", "tinyskills");
        string resultsPath = TestPaths.RequireSharedData("models", "tinyskills", "instruct", "eval", "results.json");
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiment(ts, 6));
        ResumeTests.RunTo(exp, dir.File("straight"), 6);
        ResumeTests.RunTo(exp, dir.File("split"), 3);
        ResumeTests.ResumeTo(dir.File("split"), 6);
        ResumeTests.AssertSameRun(dir.File("straight"), dir.File("split"), 6);

        // Every expert, in every archive, carries the accuracies the reference evaluation published
        // for it on the valid split (200 prompts per skill).
        using var published = JsonDocument.Parse(File.ReadAllText(resultsPath));
        var archive = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.File("straight"), "archive.json")))!;
        int expertCells = 0;
        foreach (var a in archive["archives"]!.AsArray())
            foreach (var cell in a!["cells"]!.AsArray())
            {
                string elite = cell!["elite"]!.GetValue<string>();
                if (!elite.StartsWith("expert:tinyskills/", StringComparison.Ordinal)) continue;
                string skill = elite["expert:tinyskills/".Length..];
                var want = published.RootElement.GetProperty("results").GetProperty("expert-" + skill).GetProperty("valid");
                foreach (var s in new[] { "code", "db", "os" })
                    Assert.Equal(want.GetProperty(s).GetDouble(), cell["scores"]!["tinyskills/" + s]!.GetValue<double>(), 1e-12);
                expertCells++;
            }
        Assert.Equal(9, expertCells);
        Assert.Equal(6, ResumeTests.MetricsWithoutTiming(dir.File("straight")).Length);
    }
}
