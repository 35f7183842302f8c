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

    [Fact]
    public void AgentBenchOsGold_PrintsTheRootFilesystemHash_AndRecordsItInEveryLine()
    {
        MachineRequirement.Require(Environment.IsPrivilegedProcess, "AgentBench OS samples run on the pinned root file system, whose id mapping needs root");
        string data = TestPaths.RequireSharedData();
        string hash = CycleQD.Tasks.AgentBenchOs.OsRootFilesystem.Load().Hash;
        using var tmp = new TempDir();
        string output = tmp.File("os.jsonl");
        var r = CliRunner.Run("eval", "--task", "agentbench_os", "--limit", "2", "--repeats", "1", "--responder", "scripted:gold", "--data", data, "--output", output);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains($"environment: AgentBench OS root file system {hash}", r.Out);
        Assert.Contains("score: 1 (2/2)", r.Out);
        Assert.All(File.ReadAllLines(output), l => Assert.Contains($"\"environment\":\"{hash}\"", l));
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
    [InlineData("--task", "tinyskills/code", "--responder", "scripted:gold", "--limit", "0", "--limit: 0 is out of range: it must be a whole number from 1 to 2147483647")]
    [InlineData("--task", "agentbench_db", "--responder", "scripted:gold", "--db-layout", "merged", "--db-layout must be isolated or reference")]
    [InlineData("--task", "mbpp", "give exactly one of --model DIR or --responder scripted:gold")]
    [InlineData("--task", "tinyskills/code", "--responder", "scripted:gold", "--device", "cuda", "--device, --dtype and --graph choose how a model runs; --responder runs no model")]
    [InlineData("--task", "tinyskills/code", "--model", "models/tinyskills/expert-code", "--dtype", "bfloat16", "--dtype bfloat16 needs --device cuda")]
    [InlineData("--task", "tinyskills/code", "--model", "models/tinyskills/expert-code", "--device", "cuda", "--graph", "fused", "--graph fused on --device cuda runs float16 or bfloat16")]
    [InlineData("--task", "tinyskills/code", "--model", "models/tinyskills/expert-code", "--device", "cuda", "--threads", "2", "--threads")]
    [InlineData("--task", "sam/kvasir", "--model", "models/sam-tiny/base", "--graph", "plain", "--dtype and --graph apply to Llama-family models")]
    public void BadOptions_GiveOneClearError(params string[] argsThenMessage)
    {
        string data = TestPaths.RequireSharedData();
        string message = argsThenMessage[^1];
        var r = CliRunner.Run(["eval", .. argsThenMessage[..^1], "--data", data]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error: " + message, r.Err);
    }

    [Fact]
    public void Float16FusedGraph_ScoresTheExpertAsFloat32Does()
    {
        // The repository's TinySkills folder holds every task, so no shared data is needed.
        string tinySkills = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        string model = Path.Combine(tinySkills, "expert-os");
        using var dir = new TempDir();
        string[] common = ["eval", "--task", "tinyskills/os", "--split", "valid", "--limit", "40", "--model", model, "--tinyskills", tinySkills, "--json"];
        var f32 = CliRunner.Run([.. common, "--output", dir.File("f32.jsonl")]);
        var f16 = CliRunner.Run([.. common, "--output", dir.File("f16.jsonl"), "--dtype", "float16", "--graph", "fused"]);
        Assert.True(f32.ExitCode == 0, f32.Err);
        Assert.True(f16.ExitCode == 0, f16.Err);
        double Score(string json) => System.Text.Json.JsonDocument.Parse(json).RootElement.GetProperty("score").GetDouble();
        // The expert scores 96.5 % on valid in float32; float16 rounding may flip a near tie, not more.
        Assert.True(Score(f32.Out) > 0.85, f32.Out);
        Assert.InRange(Score(f16.Out), Score(f32.Out) - 0.05, Score(f32.Out) + 0.05);
    }

    [Fact]
    public void MissingDataFolder_IsNamed()
    {
        var r = CliRunner.Run("eval", "--task", "mbpp", "--responder", "scripted:gold", "--data", "/nonexistent/cycleqd-data");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("/nonexistent/cycleqd-data", r.Err);
    }
}

public sealed class SamEvalCommandTests
{
    [Fact]
    public void SamEval_TinyModelOnKvasir_PrintsEveryMetricAndWritesOneLinePerImage()
    {
        string kvasir = TestPaths.RequireSharedData("segmentation", "kvasir_seg");
        using var dir = new TempDir();
        string output = dir.File("sam.jsonl");
        File.WriteAllLines(dir.File("split.txt"), ["cju0qoxqj9q6s0835b43399p4", "cju0rx1idathl0835detmsp84"]);
        var r = CliRunner.Run("eval", "--task", "sam/kvasir", "--model", Path.Combine(TestPaths.RepoRoot, "models", "sam-tiny", "base"),
            "--dataset", kvasir, "--split-file", dir.File("split.txt"), "--metric", "mae", "--output", output);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("2 images in", r.Out);
        Assert.Contains("score = mae", r.Out);
        foreach (var m in new[] { "iou", "dice", "mae", "s_measure", "e_measure", "weighted_f" }) Assert.Contains("  " + m, r.Out);
        var lines = File.ReadAllLines(output);
        Assert.Equal(2, lines.Length);
        Assert.Contains("\"id\":\"cju0qoxqj9q6s0835b43399p4\"", lines[0]);
        // The score is 1 − MAE.
        double mae = double.Parse(r.Out.Split('\n').Single(l => l.StartsWith("  mae", StringComparison.Ordinal))[5..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
        double score = double.Parse(r.Out.Split('\n').Single(l => l.StartsWith("score:", StringComparison.Ordinal)).Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(1 - mae, score, 1e-6);
    }

    [Theory]
    [InlineData("--metric", "f3", "error: unknown segmentation metric 'f3'")]
    [InlineData("--prompt", "mask", "error: unknown prompt kind 'mask'")]
    [InlineData("--split-file", "/nonexistent/split.txt", "error: split file not found: /nonexistent/split.txt")]
    public void SamEval_BadOption_OneErrorLine(string option, string value, string expected)
    {
        string kvasir = TestPaths.RequireSharedData("segmentation", "kvasir_seg");
        var r = CliRunner.Run("eval", "--task", "sam/kvasir", "--model", Path.Combine(TestPaths.RepoRoot, "models", "sam-tiny", "base"), "--dataset", kvasir, option, value);
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith(expected, r.Err);
    }

    [Fact]
    public void SamEval_ScriptedResponder_IsRejected()
    {
        var r = CliRunner.Run("eval", "--task", "sam/kvasir", "--responder", "scripted:gold");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("sam/* tasks have no scripted responder", r.Err);
    }
}
