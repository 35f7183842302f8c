using System.Text.Json;
using CycleQD.Tasks.Scripted;
using CycleQD.Tasks.TinySkills;
using CycleQD.Testing;

namespace CycleQD.Tasks.Tests;

public sealed class TinySkillsTests
{
    private static string Dir() => TestPaths.RequireSharedData("models", "tinyskills");

    [Theory]
    [InlineData("code", "test")]
    [InlineData("db", "valid")]
    [InlineData("os", "test")]
    public async Task GoldResponder_ScoresOne_InOneBatch(string skill, string split)
    {
        var bench = new TinySkillsBenchmark(new TinySkillsOptions { TinySkillsDir = Dir(), Skill = skill, Split = split });
        var gold = bench.CreateGoldResponder();
        var report = await bench.EvaluateAsync(gold, null, TestContext.Current.CancellationToken);
        Assert.Equal(1.0, report.Score);
        Assert.Equal(200, report.Samples.Count);
        Assert.Equal([200], gold.BatchSizes);
    }

    /// <summary>The repository's TinySkills copy, which also holds tasks/generic (the instruct base's own tasks).</summary>
    private static string ShippedDir() => Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");

    [Theory]
    [InlineData("valid")]
    [InlineData("test")]
    public async Task Generic_GoldResponder_ScoresOneOnAll600Prompts(string split)
    {
        var bench = new TinySkillsBenchmark(new TinySkillsOptions { TinySkillsDir = ShippedDir(), Skill = TinySkillsBenchmark.Generic, Split = split });
        Assert.Equal("tinyskills/generic", bench.Name);
        var gold = bench.CreateGoldResponder();
        var report = await bench.EvaluateAsync(gold, null, TestContext.Current.CancellationToken);
        Assert.Equal(1.0, report.Score);
        Assert.Equal(600, report.Samples.Count);
        Assert.Equal($"generic-{split}-00000", report.Samples[0].Id);
    }

    [Fact]
    public async Task Generic_WrongAnswers_AreScoredByExactMatch()
    {
        var bench = new TinySkillsBenchmark(new TinySkillsOptions { TinySkillsDir = ShippedDir(), Skill = TinySkillsBenchmark.Generic, Split = "valid", Limit = 4 });
        var examples = bench.Examples();
        // The first example right (with the newline the model writes), the others given the first's answer.
        var report = await bench.EvaluateAsync(new ScriptedResponder(r => " " + examples[0].Answer + "\n"), null, TestContext.Current.CancellationToken);
        Assert.Equal("echo 2 fox .", examples[0].Prompt);
        Assert.True(report.Samples[0].Correct);
        int right = examples.Count(e => e.Answer == examples[0].Answer);
        Assert.Equal((double)right / 4, report.Score);
        Assert.True(right < 4);
    }

    [Fact]
    public async Task Requests_FollowTheProtocol()
    {
        var bench = new TinySkillsBenchmark(new TinySkillsOptions { TinySkillsDir = Dir(), Skill = "code", Limit = 3 });
        var seen = new List<CycleQD.Core.Evaluation.GenerationRequest>();
        var report = await bench.EvaluateAsync(new ScriptedResponder(r => { seen.Add(r); return " 16\n junk"; }), null, TestContext.Current.CancellationToken);
        Assert.Equal(3, seen.Count);
        Assert.All(seen, r => { Assert.Equal(8, r.MaxNewTokens); Assert.True(r.AddBos); Assert.Equal(0.0, r.Temperature); Assert.Equal(["\n"], r.StopStrings); });
        Assert.Equal("calc 6+2+8 =", seen[0].Prompt);
        Assert.True(report.Samples[0].Correct); // " 16\n junk" -> "16"
        Assert.False(report.Samples[1].Correct);
    }

    /// <summary>
    /// Replaying the stored predictions of every model in eval/predictions.json through the judge
    /// reproduces every accuracy in eval/results.json (the README's tables).
    /// </summary>
    [Fact]
    public async Task StoredPredictions_ReproduceTheReadmeAccuracies()
    {
        string dir = Dir();
        using var preds = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(dir, "eval", "predictions.json"), TestContext.Current.CancellationToken));
        using var results = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(dir, "eval", "results.json"), TestContext.Current.CancellationToken));
        int checkedCount = 0;
        foreach (var model in preds.RootElement.EnumerateObject())
        foreach (var split in model.Value.EnumerateObject())
        foreach (var skill in split.Value.EnumerateObject())
        {
            var bench = new TinySkillsBenchmark(new TinySkillsOptions { TinySkillsDir = dir, Skill = skill.Name, Split = split.Name });
            var byPrompt = bench.Examples().Zip(skill.Value.EnumerateArray().Select(p => p.GetString()!)).ToDictionary(x => x.First.Prompt, x => x.Second);
            var report = await bench.EvaluateAsync(new ScriptedResponder(r => " " + byPrompt[r.Prompt] + "\n"), null, TestContext.Current.CancellationToken);
            double expected = results.RootElement.GetProperty("results").GetProperty(model.Name).GetProperty(split.Name).GetProperty(skill.Name).GetDouble();
            Assert.Equal(expected, report.Score, 12);
            checkedCount++;
        }
        Assert.Equal(10 * 2 * 3, checkedCount);
    }

    [Fact]
    public void UnknownSkill_IsNamed()
    {
        var bench = new TinySkillsBenchmark(new TinySkillsOptions { TinySkillsDir = Dir(), Skill = "chess" });
        var e = Assert.Throws<ArgumentException>(() => bench.Examples());
        Assert.Contains("chess", e.Message);
    }

    [Fact]
    public void BadLine_NamesFileAndLine()
    {
        using var tmp = new TempDir();
        Directory.CreateDirectory(Path.Combine(tmp.Path, "tasks", "db"));
        File.WriteAllText(Path.Combine(tmp.Path, "tasks", "db", "test.jsonl"), "{\"id\":\"a\",\"prompt\":\"p\",\"answer\":\"1\"}\n{\"id\":\"b\"}\n");
        var bench = new TinySkillsBenchmark(new TinySkillsOptions { TinySkillsDir = tmp.Path, Skill = "db" });
        var e = Assert.Throws<InvalidDataException>(() => bench.Examples());
        Assert.Contains("test.jsonl:2", e.Message);
    }
}
