using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

public sealed class EvalCommandTests
{
    [Fact]
    public void TinySkillsGold_PrintsScoreOne_AndWritesOneJsonLinePerSample()
    {
        string data = TestPaths.RequireSharedData();
        using var tmp = new TempDir();
        string output = tmp.File("d.jsonl");
        var r = CliRunner.Run("eval", "--task", "tinyskills/os", "--split", "valid", "--responder", "scripted:gold", "--data", data, "--output", output);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("score: 1 (200/200)", r.Out);
        Assert.Equal(200, File.ReadAllLines(output).Length);
        Assert.Contains("\"correct\":true", File.ReadAllLines(output)[0]);
    }

    [Theory]
    [InlineData("code")]
    [InlineData("db")]
    [InlineData("os")]
    public void ModelEvaluation_TinySkillsExpert_ReproducesPublishedTestScore(string skill)
    {
        string data = TestPaths.RequireSharedData();
        string models = Path.Combine(data, "models", "tinyskills");
        using var results = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(models, "eval", "results.json")));
        double expected = results.RootElement.GetProperty("results").GetProperty($"expert-{skill}").GetProperty("test").GetProperty(skill).GetDouble();
        using var dir = new TempDir();
        string output = dir.File("out.jsonl");
        var r = CliRunner.Run("eval", "--task", $"tinyskills/{skill}", "--split", "test", "--model", Path.Combine(models, $"expert-{skill}"),
            "--data", data, "--output", output);
        Assert.Equal(0, r.ExitCode);
        int correct = (int)Math.Round(expected * 200);
        Assert.Contains($"score: {expected.ToString(System.Globalization.CultureInfo.InvariantCulture)} ({correct}/200)", r.Out);
        Assert.Equal(200, File.ReadAllLines(output).Length);
    }

    [Theory]
    [InlineData("--task", "chess", "--responder", "scripted:gold", "unknown task 'chess'")]
    [InlineData("--task", "mbpp", "--responder", "oracle", "unknown responder 'oracle'")]
    [InlineData("--task", "tinyskills/code", "--responder", "scripted:gold", "--limit", "0", "--limit must be positive")]
    [InlineData("--task", "agentbench_db", "--responder", "scripted:gold", "--db-layout", "merged", "--db-layout must be isolated or reference")]
    [InlineData("--task", "mbpp", "give exactly one of --model DIR or --responder scripted:gold")]
    public void BadOptions_GiveOneClearError(params string[] argsThenMessage)
    {
        string data = TestPaths.RequireSharedData();
        string message = argsThenMessage[^1];
        var r = CliRunner.Run(["eval", .. argsThenMessage[..^1], "--data", data]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error: " + message, r.Err);
    }

    [Fact]
    public void MissingDataFolder_IsNamed()
    {
        var r = CliRunner.Run("eval", "--task", "mbpp", "--responder", "scripted:gold", "--data", "/nonexistent/cycleqd-data");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("/nonexistent/cycleqd-data", r.Err);
    }
}
