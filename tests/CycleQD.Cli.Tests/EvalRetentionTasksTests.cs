using System.Globalization;
using CycleQD.Onnx.Runtime;
using CycleQD.Runs.Families.Llama;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

/// <summary>`cycleqd eval` on the retention tasks: tinyskills/generic and perplexity.</summary>
public sealed class EvalRetentionTasksTests
{
    private static readonly string Shipped = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");

    [Fact]
    public void GenericGold_FromTheShippedFolder_ScoresOneOnAll600TestPrompts()
    {
        using var tmp = new TempDir();
        string output = tmp.File("g.jsonl");
        var r = CliRunner.Run("eval", "--task", "tinyskills/generic", "--responder", "scripted:gold", "--tinyskills", Shipped, "--data", tmp.Path, "--output", output);
        Assert.True(r.ExitCode == 0, r.Err);
        Assert.Contains("task: tinyskills/generic: tinyskills/generic / test (600 samples)", r.Out);
        Assert.Contains("score: 1 (600/600)", r.Out);
        Assert.Equal(600, File.ReadAllLines(output).Length);
    }

    [Fact]
    public void Generic_DataFolderWithoutIt_SaysWhereItIs()
    {
        using var tmp = new TempDir();
        Directory.CreateDirectory(Path.Combine(tmp.Path, "models", "tinyskills", "tasks", "code"));
        var r = CliRunner.Run("eval", "--task", "tinyskills/generic", "--responder", "scripted:gold", "--data", tmp.Path);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"error: --data: {Path.Combine(tmp.Path, "models", "tinyskills")} has no tasks/generic/ folder (pass --tinyskills DIR", r.Err);
    }

    [Fact]
    public void Perplexity_InstructBase_PrintsNatsPerTokenAndTokensPerSecond_EqualToTheScorer()
    {
        using var tmp = new TempDir();
        string text = tmp.File("t.txt");
        File.WriteAllText(text, "echo 2 fox .\n2 fox\nfirst g hen .\ng\nOnce upon a time, there was a little girl.\n");
        string output = tmp.File("p.jsonl");
        string model = Path.Combine(Shipped, "base");
        var r = CliRunner.Run("eval", "--task", "perplexity", "--text", text, "--model", model, "--window", "16", "--output", output, "--data", tmp.Path);
        Assert.True(r.ExitCode == 0, r.Err);

        using var llm = LlamaModel.Open(model);
        using var scorer = llm.CreateScorer();
        var tokens = PerplexityBenchmark.Tokenize(llm.Tokenizer, File.ReadAllText(text));
        var expected = scorer.Score(tokens, 16, TestContext.Current.CancellationToken);
        Assert.Contains($"score: {expected.NatsPerToken.ToString("0.######", CultureInfo.InvariantCulture)} nats/token (lower is better", r.Out);
        Assert.Contains($"tokens                      {expected.Tokens}", r.Out);
        Assert.Contains("tokens_per_second", r.Out);
        Assert.Contains(" tokens/s)", r.Out);
        Assert.Equal(expected.Windows, File.ReadAllLines(output).Length);
    }

    [Theory]
    [InlineData("missing", "perplexity text file not found: ")]
    [InlineData("empty", ": the perplexity text file is empty")]
    [InlineData("binary", ": the perplexity text file is not UTF-8 (invalid byte at offset 1)")]
    public void Perplexity_BadTextFile_OneErrorNamingTheFile(string kind, string expected)
    {
        using var tmp = new TempDir();
        string text = tmp.File("t.txt");
        if (kind == "empty") File.WriteAllText(text, "");
        if (kind == "binary") File.WriteAllBytes(text, [0x41, 0xFF, 0xFE, 0x00]);
        var r = CliRunner.Run("eval", "--task", "perplexity", "--text", text, "--model", Path.Combine(Shipped, "base"), "--data", tmp.Path);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error: ", r.Err);
        Assert.Contains(text, r.Err);
        Assert.Contains(expected, r.Err);
    }

    [Theory]
    [InlineData("--responder", "scripted:gold", "perplexity has no gold answers")]
    [InlineData("--model", "M", "perplexity needs --text FILE")]
    [InlineData("--model", "M", "--text", "T", "--limit", "3", "--limit does not apply to perplexity")]
    public void Perplexity_BadOptions_GiveOneClearError(params string[] argsThenMessage)
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("T"), "text");
        var args = argsThenMessage[..^1].Select(a => a switch { "M" => Path.Combine(Shipped, "base"), "T" => tmp.File("T"), _ => a }).ToArray();
        var r = CliRunner.Run(["eval", "--task", "perplexity", .. args, "--data", tmp.Path]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error: " + argsThenMessage[^1], r.Err);
    }

    [Fact]
    public void TextOption_OnAnotherTask_IsRefused()
    {
        using var tmp = new TempDir();
        var r = CliRunner.Run("eval", "--task", "tinyskills/code", "--responder", "scripted:gold", "--text", "x.txt", "--data", tmp.Path);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("error: --text and --window apply to the perplexity task only, not tinyskills/code", r.Err);
    }
}
