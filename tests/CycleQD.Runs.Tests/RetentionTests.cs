using System.Text.Json.Nodes;
using CycleQD.Core;
using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Runtime;
using CycleQD.Runs.Families.Llama;
using CycleQD.Runs.Final;
using CycleQD.Tasks.TinySkills;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

/// <summary>
/// report.retention: tasks the search does not optimise, scored on test for every row of the final
/// table (TinySkills generic accuracy, and perplexity in nats per token), and the perplexity task itself.
/// </summary>
public sealed class RetentionTests
{
    private static readonly string Models = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");

    private const string Text = "echo 2 fox .\n2 fox\nfirst g hen .\ng\nlast a cow e .\ne\nOnce upon a time, there was a little girl named Lily.\n";

    /// <summary><see cref="FinalStageTests.TinyExperiment"/> with retention tasks and a perplexity text.</summary>
    private static string WithRetention(string retention, string textFile, int generations = 2) =>
        FinalStageTests.TinyExperiment(generations)
            .Replace("evaluation: { split: valid, limit: 8, tinyskills: ", $"evaluation: {{ perplexity: {{ file: {textFile}, window: 16 }}, split: valid, limit: 8, tinyskills: ")
            .Replace("report: { task_arithmetic_lambdas: [0.5, 1.0] }", $"report: {{ task_arithmetic_lambdas: [0.5, 1.0], retention: [{retention}] }}");

    private static JsonObject Json(string path) => JsonNode.Parse(File.ReadAllText(path))!.AsObject();

    private static List<string> Finish(RunSession s)
    {
        var lines = new List<string>();
        s.InitializeAsync(default).GetAwaiter().GetResult();
        Assert.True(s.RunAsync(default).GetAwaiter().GetResult());
        Assert.NotNull(s.FinishAsync(lines.Add, default).GetAwaiter().GetResult());
        return lines;
    }

    [Fact]
    public async Task Finish_GenericAndPerplexityRetention_EveryModelRowHasBoth_AverageIsOverSearchedTasksOnly()
    {
        using var tmp = new TempDir();
        string text = tmp.File("text.txt");
        File.WriteAllText(text, Text);
        string exp = Experiments.Write(tmp, "exp.yaml", WithRetention("tinyskills/generic, perplexity", text));
        string run = tmp.File("run");
        using (var s = RunSession.Start(exp, run, 2, null)) Finish(s);

        var report = Json(Path.Combine(run, "report.json"));
        Assert.Equal("""[{"task":"tinyskills/generic","unit":"accuracy","lower_is_better":false},{"task":"perplexity","unit":"nats/token","lower_is_better":true}]""",
            report["retention"]!.ToJsonString());
        var rows = report["rows"]!.AsArray().Select(r => r!.AsObject()).ToArray();
        foreach (var r in rows)
        {
            string key = r["key"]!.GetValue<string>();
            var test = r["test"]!.AsObject().Select(kv => kv.Value!.GetValue<double>()).ToArray();
            Assert.Equal(test.Average(), r["test_average"]!.GetValue<double>(), 12);
            if (key == "best_elite_per_task")
            {
                Assert.Null(r["retention"]); // several models: no one model to score
                continue;
            }
            var retention = r["retention"]!.AsObject();
            Assert.InRange(retention["tinyskills/generic"]!.GetValue<double>(), 0, 1);
            double nats = retention["perplexity"]!.GetValue<double>();
            Assert.True(double.IsFinite(nats) && nats > 0, $"{key}: perplexity {nats}");
        }

        // The base row against an independent evaluation of the base model.
        var baseRow = rows.Single(r => r["key"]!.GetValue<string>() == "base")["retention"]!;
        using (var model = LlamaModel.Open(Path.Combine(Models, "base")))
        {
            var generic = new TinySkillsBenchmark(new TinySkillsOptions { TinySkillsDir = Models, Skill = "generic", Split = "test", Limit = 8 });
            double expected = (await generic.EvaluateAsync(model.Generator, null, TestContext.Current.CancellationToken)).Score;
            Assert.Equal(expected, baseRow["tinyskills/generic"]!.GetValue<double>());
            using var scorer = model.CreateScorer();
            var tokens = PerplexityBenchmark.Tokenize(model.Tokenizer, Text);
            Assert.True(tokens.Length > 16, "the text spans several windows of 16 tokens");
            Assert.Equal(scorer.Score(tokens, 16, TestContext.Current.CancellationToken).NatsPerToken, baseRow["perplexity"]!.GetValue<double>(), 9);
        }

        // The final rows' retention scores are final.json's.
        var fj = Json(Path.Combine(run, "final", "final.json"));
        var finalRow = rows.Single(r => r["key"]!.GetValue<string>() == "final");
        Assert.Equal(fj["retention_scores"]!.ToJsonString(), finalRow["retention"]!.ToJsonString());
        Assert.Equal(fj["softmax"]!["retention_scores"]!.ToJsonString(), rows.Single(r => r["key"]!.GetValue<string>() == "final_softmax")["retention"]!.ToJsonString());

        string summary = File.ReadAllText(Path.Combine(run, "summary.md"));
        Assert.Contains("| average | generic (kept) | perplexity ↓ nats/token |", summary);
        Assert.Contains("average: mean over the searched tasks (code, db, os) only", summary);
        Assert.Contains("perplexity: nats/token on the text (lower is better)", summary);

        // Finished: a resume evaluates nothing again, retention included.
        byte[] before = File.ReadAllBytes(Path.Combine(run, "report.json"));
        using (var s = RunSession.Resume(run, null))
        {
            var again = Finish(s);
            Assert.Single(again);
        }
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(run, "report.json")));
    }

    [Fact]
    public void Finish_StandInResponder_ScoresGenericRetentionWithItsGoldAnswers_AndPerplexityWithTheModel()
    {
        using var tmp = new TempDir();
        string text = tmp.File("text.txt");
        File.WriteAllText(text, Text);
        string yaml = WithRetention("tinyskills/generic, perplexity", text, generations: 1)
            .Replace("split: valid, limit: 8,", "split: valid, limit: 8, responder: scripted:weight-keyed-gold,");
        string exp = Experiments.Write(tmp, "exp.yaml", yaml);
        string run = tmp.File("run");
        using (var s = RunSession.Start(exp, run, 1, null)) Finish(s);
        var rows = Json(Path.Combine(run, "report.json"))["rows"]!.AsArray().Select(r => r!.AsObject()).Where(r => r["retention"] is not null).ToArray();
        Assert.NotEmpty(rows);
        // The stand-in answers a weight-dependent 20–90 % of prompts with gold: generic scores vary with the weights
        // and stay inside [0, 1]; perplexity still reads the real model's logits.
        var generic = rows.Select(r => r["retention"]!["tinyskills/generic"]!.GetValue<double>()).ToArray();
        Assert.All(generic, g => Assert.InRange(g, 0, 1));
        Assert.True(generic.Distinct().Count() > 1, string.Join(", ", generic));
        Assert.All(rows, r => Assert.True(r["retention"]!["perplexity"]!.GetValue<double>() > 0));
    }

    [Fact]
    public void EvaluationKey_ChangesOnlyWithRetention_AndWithThePerplexityText()
    {
        using var tmp = new TempDir();
        string text = tmp.File("text.txt");
        File.WriteAllText(text, Text);
        var plain = ExperimentConfig.Parse(FinalStageTests.TinyExperiment(2), "exp.yaml", tmp.Path);
        // The key of a run without retention keeps its old form, so its cached rows stay valid.
        Assert.Equal($"search=valid;report=test;limit=8;data={Models}", FinalStage.EvaluationKey(plain));

        var generic = ExperimentConfig.Parse(WithRetention("tinyskills/generic", text), "exp.yaml", tmp.Path);
        Assert.Equal($"search=valid;report=test;limit=8;data={Models};retention=tinyskills/generic", FinalStage.EvaluationKey(generic));

        var ppl = ExperimentConfig.Parse(WithRetention("tinyskills/generic, perplexity", text), "exp.yaml", tmp.Path);
        string k1 = FinalStage.EvaluationKey(ppl);
        Assert.StartsWith($"search=valid;report=test;limit=8;data={Models};retention=tinyskills/generic,perplexity;perplexity={text};sha256=", k1);
        File.AppendAllText(text, "more\n");
        Assert.NotEqual(k1, FinalStage.EvaluationKey(ppl));
    }

    [Fact]
    public void Parse_ShippedTinySkillsExample_ShowsGenericRetention()
    {
        var c = ExperimentConfig.Load(Path.Combine(TestPaths.RepoRoot, "examples", "tinyskills.yaml"));
        Assert.Equal(["tinyskills/generic"], c.Report.Retention);
        Assert.Empty(ReportSettings.Default.Retention);
    }

    [Theory]
    [InlineData("tinyskills/db", "report.retention: 'tinyskills/db' is a searched task (in tasks)")]
    [InlineData("tinyskills/generic, tinyskills/generic", "'tinyskills/generic' is listed twice")]
    [InlineData("sam/kvasir", "'sam/kvasir' is not a task this run can score for retention")]
    [InlineData("chess", "'chess' is not a task this run can score for retention")]
    public void Parse_BadRetentionList_NamesTheEntry(string retention, string expected)
    {
        using var tmp = new TempDir();
        string text = tmp.File("text.txt");
        File.WriteAllText(text, Text);
        var e = Assert.Throws<ConfigurationException>(() => ExperimentConfig.Parse(WithRetention(retention, text), "exp.yaml", tmp.Path));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Parse_PerplexityAsASearchedTask_IsRefusedAndPointsToRetention()
    {
        using var tmp = new TempDir();
        string text = tmp.File("text.txt");
        File.WriteAllText(text, Text);
        string yaml = $$"""
            tasks: [tinyskills/code, perplexity]
            model:
              base: {{Models}}/base
              experts:
                tinyskills/code: {{Models}}/expert-code
                perplexity: {{Models}}/expert-db
            evaluation: { tinyskills: {{Models}}, perplexity: { file: {{text}} } }
            """;
        var e = Assert.Throws<ConfigurationException>(() => ExperimentConfig.Parse(yaml, "exp.yaml", tmp.Path));
        Assert.Contains("perplexity is not a score in [0, 1]", e.Message);
        Assert.Contains("report.retention", e.Message);
    }

    [Theory]
    [InlineData("missing", "perplexity text file not found: ")]
    [InlineData("empty", "the perplexity text file is empty")]
    [InlineData("latin1", "the perplexity text file is not UTF-8 (invalid byte at offset 4)")]
    public void Parse_BadPerplexityText_OneErrorNamingTheFile(string kind, string expected)
    {
        using var tmp = new TempDir();
        string text = tmp.File("text.txt");
        if (kind == "empty") File.WriteAllText(text, "  \n");
        if (kind == "latin1") File.WriteAllBytes(text, [(byte)'c', (byte)'a', (byte)'f', (byte)'e', 0xE9, (byte)'\n']);
        var e = Assert.Throws<ConfigurationException>(() => ExperimentConfig.Parse(WithRetention("perplexity", text), "exp.yaml", tmp.Path));
        Assert.Contains("report.retention: perplexity: evaluation.perplexity.file: ", e.Message);
        Assert.Contains(text, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Parse_GenericRetention_TinySkillsFolderWithoutGeneric_NamesTheFolder()
    {
        using var tmp = new TempDir();
        Directory.CreateDirectory(tmp.File("tasks"));
        string yaml = FinalStageTests.TinyExperiment(2)
            .Replace($"tinyskills: {Models} ", $"tinyskills: {tmp.Path} ")
            .Replace("report: { task_arithmetic_lambdas: [0.5, 1.0] }", "report: { retention: [tinyskills/generic] }");
        var e = Assert.Throws<ConfigurationException>(() => ExperimentConfig.Parse(yaml, "exp.yaml", tmp.Path));
        Assert.Contains($"report.retention: tinyskills/generic: evaluation.tinyskills: {tmp.Path} has no tasks/generic/ folder", e.Message);
    }

    [Fact]
    public void Parse_PerplexityRetentionWithoutAFile_NamesTheSetting()
    {
        string yaml = FinalStageTests.TinyExperiment(2).Replace("report: { task_arithmetic_lambdas: [0.5, 1.0] }", "report: { retention: [perplexity] }");
        var e = Assert.Throws<ConfigurationException>(() => ExperimentConfig.Parse(yaml, "exp.yaml", "/tmp"));
        Assert.Contains("evaluation.perplexity.file: task perplexity needs a UTF-8 text file", e.Message);
    }

    [Fact]
    public async Task PerplexityBenchmark_ThroughATextGenerator_IsRefused()
    {
        using var tmp = new TempDir();
        string text = tmp.File("text.txt");
        File.WriteAllText(text, Text);
        var b = new PerplexityBenchmark(text, null);
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => b.EvaluateAsync(new Tasks.Scripted.ScriptedResponder(_ => "x"), null, TestContext.Current.CancellationToken));
        Assert.Contains("needs a Llama-family model's logits", e.Message);
    }

    [Fact]
    public async Task PerplexityBenchmark_ByteOrderMark_IsDroppedAndTheTextIsScored()
    {
        using var tmp = new TempDir();
        string text = tmp.File("bom.txt");
        File.WriteAllBytes(text, [0xEF, 0xBB, 0xBF, .. System.Text.Encoding.UTF8.GetBytes(Text)]);
        Assert.Equal(Text, PerplexityBenchmark.ReadText(text));
        using var model = LlamaModel.Open(Path.Combine(Models, "base"));
        using var scorer = model.CreateScorer();
        var r = await new PerplexityBenchmark(text, 16).ScoreAsync(scorer, model.Tokenizer, TestContext.Current.CancellationToken);
        var tokens = PerplexityBenchmark.Tokenize(model.Tokenizer, Text);
        Assert.Equal(model.Tokenizer.BosId, tokens[0]);
        Assert.Equal(tokens.Length - 1, r.Metrics["tokens"]);
        Assert.Equal(LlamaSequenceScorer.Windows(tokens.Length, 16).Count, r.Metrics["windows"]);
        Assert.Equal(8, r.Metrics["stride"]);
        Assert.Equal(r.Score, r.Metrics["nats_per_token"]);
        Assert.Equal(Math.Exp(r.Score), r.Metrics["perplexity"], 9);
        Assert.True(r.Metrics["tokens_per_second"] > 0);
    }

    [Fact]
    public void RunReport_RetentionColumns_ShownAfterTheAverage_RoundTripThroughReportJson()
    {
        var report = new RunReport(["tinyskills/code", "tinyskills/db"], "key", 3)
        {
            Retention = [new RetentionColumn("tinyskills/generic", "accuracy", false), new RetentionColumn("perplexity", "nats/token", true)],
        };
        report.Set(new ReportRow("base", "base", [0.1, 0.2], [0.3, 0.5], "") { Retention = [0.975, 1.23456] });
        report.Set(new ReportRow("best_elite_per_task", "CycleQD best elite per task", [0.1, 0.2], [0.5, 0.5], "several"));
        string textTable = report.ToText();
        var lines = textTable.Split('\n');
        Assert.Matches(@"^model\s+code\s+db\s+average\s+generic \(kept\)\s+perplexity ↓ nats/token\s+valid avg$", lines[0].TrimEnd());
        Assert.Matches(@"^base\s+30\.0\s+50\.0\s+40\.0\s+97\.5\s+1\.235\s+15\.0$", lines[1].TrimEnd());
        Assert.Matches(@"^CycleQD best elite per task\s+50\.0\s+50\.0\s+50\.0\s+–\s+–\s+15\.0$", lines[2].TrimEnd());
        Assert.Contains("average: mean over the searched tasks (code, db) only. Retention columns, scored on test and never averaged: generic: test accuracy, %; perplexity: nats/token on the text (lower is better).", textTable);

        using var tmp = new TempDir();
        string path = tmp.File("report.json");
        File.WriteAllBytes(path, report.ToJson());
        var back = RunReport.TryRead(path, ["tinyskills/code", "tinyskills/db"], "key")!;
        Assert.Equal(report.Retention, back.Retention);
        Assert.Equal([0.975, 1.23456], back.Find("base")!.Retention);
        Assert.Null(back.Find("best_elite_per_task")!.Retention);
        Assert.Equal(report.ToMarkdown(), back.ToMarkdown());
    }
}
