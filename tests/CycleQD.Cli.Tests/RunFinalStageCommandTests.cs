using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

/// <summary>`cycleqd run` on real models ends with the final stage and the table; its numbers are the ones `cycleqd eval` gives.</summary>
public partial class RunFinalStageCommandTests
{
    private static string Experiment()
    {
        string m = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        return $"""
            name: table-test
            seed: 3
            generations: 1
            tasks: [tinyskills/code, tinyskills/db, tinyskills/os]
            model:
              base: {m}/base
              experts:
                tinyskills/code: {m}/expert-code
                tinyskills/db: {m}/expert-db
                tinyskills/os: {m}/expert-os
            evaluation: {"{"} split: valid, limit: 10, tinyskills: {m} {"}"}
            final_merge: {"{"} grid: [1.0], rounds: 0 {"}"}
            report: {"{"} task_arithmetic_lambdas: [0.7] {"}"}
            """;
    }

    [GeneratedRegex(@"score: (\S+) \(")]
    private static partial Regex Score();

    [Fact]
    public void Run_RealModels_PrintsTable_ExpertAndBaseRowsEqualEval()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment());
        string run = dir.File("run");
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", run, "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        Assert.Contains("Test split, accuracy %", r.Out);
        Assert.Matches(@"(?m)^CycleQD final \(search\)\s+\d", r.Out);
        Assert.Matches(@"(?m)^TIES \(density 0\.2, λ 1\)\s+\d", r.Out);
        var rows = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "report.json")))!["rows"]!.AsArray();

        string m = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        foreach (var (key, folder) in new[] { ("expert:tinyskills/db", "expert-db"), ("expert:tinyskills/code", "expert-code"), ("base", "base") })
        {
            var row = rows.Single(x => x!["key"]!.GetValue<string>() == key)!;
            foreach (var skill in new[] { "code", "db", "os" })
            {
                var e = CliRunner.Run("eval", "--task", "tinyskills/" + skill, "--split", "test", "--limit", "10", "--model", Path.Combine(m, folder),
                    "--data", TestPaths.RepoRoot, "--output", dir.File($"{folder}-{skill}.jsonl"));
                Assert.True(e.ExitCode == 0, e.Err + e.Out);
                double evalScore = double.Parse(Score().Match(e.Out).Groups[1].Value, CultureInfo.InvariantCulture);
                Assert.Equal(evalScore, row["test"]!["tinyskills/" + skill]!.GetValue<double>());
            }
        }

        // Resumed after the last generation: the table again, nothing evaluated.
        var again = CliRunner.Run("resume", run, "--device", "cpu");
        Assert.True(again.ExitCode == 0, again.Err + again.Out);
        Assert.Contains("final: already done for 1 generations", again.Out);
        Assert.DoesNotContain("final: weight search trial", again.Out);
        Assert.Matches(@"(?m)^CycleQD final \(search\)\s+\d", again.Out);
    }

    [Fact]
    public void Run_GenericRetention_TableHasTheColumnAfterTheAverage_BaseAndExpertEqualEval()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment().Replace("report: { task_arithmetic_lambdas: [0.7] }", "report: { task_arithmetic_lambdas: [0.7], retention: [tinyskills/generic] }"));
        string run = dir.File("run");
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", run, "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        Assert.Matches(@"(?m)^model\s+code\s+db\s+os\s+average\s+generic \(kept\)\s+valid avg$", r.Out);
        Assert.Contains("average: mean over the searched tasks (code, db, os) only. Retention columns, scored on test and never averaged: generic: test accuracy, %.", r.Out);
        var rows = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "report.json")))!["rows"]!.AsArray();
        string m = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        foreach (var (key, folder) in new[] { ("base", "base"), ("expert:tinyskills/os", "expert-os") })
        {
            // evaluation.limit (10) applies to retention tasks as to the searched ones.
            var e = CliRunner.Run("eval", "--task", "tinyskills/generic", "--limit", "10", "--model", Path.Combine(m, folder),
                "--data", TestPaths.RepoRoot, "--output", dir.File($"{folder}-generic.jsonl"));
            Assert.True(e.ExitCode == 0, e.Err + e.Out);
            double evalScore = double.Parse(Score().Match(e.Out).Groups[1].Value, CultureInfo.InvariantCulture);
            var row = rows.Single(x => x!["key"]!.GetValue<string>() == key)!;
            Assert.Equal(evalScore, row["retention"]!["tinyskills/generic"]!.GetValue<double>());
        }
    }
}
