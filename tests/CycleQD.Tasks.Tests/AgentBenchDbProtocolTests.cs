using CycleQD.Core.Evaluation;
using CycleQD.Tasks.AgentBenchDb;
using CycleQD.Tasks.Scripted;
using CycleQD.Testing;

namespace CycleQD.Tasks.Tests;

public sealed class AgentBenchDbProtocolTests
{
    private static AgentBenchDbBenchmark Bench(params int[] ids)
    {
        string data = TestPaths.RequireSharedData();
        TestPaths.RequireSharedData("agentbench_db", "data_dbbench_standard_dev.jsonl");
        return new AgentBenchDbBenchmark(new AgentBenchDbOptions { DataDir = data, Ids = ids });
    }

    [Fact]
    public async Task QueryResult_IsShownAsPythonStrOfFetchall_AndAllPromptsOfARoundAreBatched()
    {
        // Record 0: "What are the Notes when the Method is decision?" (table "Jiu-Jitsu Championships Results").
        var bench = Bench(0, 1, 2);
        var seen = new List<string>();
        var responder = new ScriptedResponder(req =>
        {
            lock (seen) seen.Add(req.Prompt);
            if (!req.Prompt.Contains("Jiu-Jitsu Championships Results", StringComparison.Ordinal)) return "Action: Answer\nFinal Answer: [\"x\"]";
            if (!req.Prompt.Contains("[('", StringComparison.Ordinal))
                return "Action: Operation\n```sql\nSELECT Notes, COUNT(*) FROM `Jiu-Jitsu Championships Results` WHERE Method = 'Decision' GROUP BY Notes;\n```";
            return "Action: Answer\nFinal Answer: [\"Women +60kg Bronze\"]";
        });
        var report = await bench.EvaluateAsync(responder, null, TestContext.Current.CancellationToken);
        Assert.Equal([3, 1], responder.BatchSizes);
        Assert.True(report.Samples[0].Correct, report.Samples[0].Reason);
        Assert.Contains("user: [('Women +60kg Bronze', 1)]", report.Samples[0].Transcript);
        Assert.All(seen, p => Assert.StartsWith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nI will ask you a question", p));
        Assert.EndsWith("<|start_header_id|>assistant<|end_header_id|>\n\n", seen[0]);
    }

    [Fact]
    public async Task SqlError_IsShownAsMysqlConnectorPrintsIt_AndOperationInTheLastRoundEndsTheEpisode()
    {
        var bench = Bench(0);
        var responder = new ScriptedResponder(_ => "Action: Operation\n```sql\nSELECT nope FROM `Jiu-Jitsu Championships Results`;\n```");
        var report = await bench.EvaluateAsync(responder, null, TestContext.Current.CancellationToken);
        Assert.Equal([1, 1, 1, 1, 1, 1], responder.BatchSizes); // rounds 0..5
        var s = report.Samples[0];
        Assert.False(s.Correct);
        Assert.Contains("user: 1054 (42S22): Unknown column 'nope' in 'SELECT'", s.Transcript.Select(t => t.Replace("field list", "SELECT", StringComparison.Ordinal)));
        Assert.Equal(5, s.Transcript.Count(t => t.StartsWith("user: ", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData("Action: Answer\nFinal Answer: [\"Women +60kg Bronze\"]", true)]
    // eval(" Women +60kg Bronze") raises, so the answer is [" Women +60kg Bronze"], leading space included: a mismatch.
    [InlineData("Action: Answer\nFinal Answer: Women +60kg Bronze", false)]
    [InlineData("Final Answer: [\"Women +60kg Bronze\"]", false)] // needs a newline before "Final Answer:"
    [InlineData("Action: Answer\nFinal Answer: ['women +60kg bronze']", false)] // case-sensitive
    public async Task FinalAnswer_IsJudgedWithPythonSemantics(string reply, bool expected)
    {
        var bench = Bench(0);
        var report = await bench.EvaluateAsync(new ScriptedResponder(_ => reply), null, TestContext.Current.CancellationToken);
        Assert.Equal(expected, report.Samples[0].Correct);
    }

    [Fact]
    public async Task NumericAnswers_CompareAsFloats_AndBareStringsBecomeCharacterLists()
    {
        // Record 17 is a counting record; its table stays empty (a row has the wrong cell count).
        var bench = Bench(17);
        var rec = bench.SelectedRecords()[0];
        Assert.Single(rec.Label);
        string gold = rec.Label[0];
        string asFloat = gold.Contains('.') ? gold : gold + ".0";
        var r1 = await bench.EvaluateAsync(new ScriptedResponder(_ => $"Action: Answer\nFinal Answer: [{asFloat}]"), null, TestContext.Current.CancellationToken);
        Assert.True(r1.Samples[0].Correct, r1.Samples[0].Reason);
        var r2 = await bench.EvaluateAsync(new ScriptedResponder(_ => $"Action: Answer\nFinal Answer: \"{gold}{gold}\""), null, TestContext.Current.CancellationToken);
        Assert.False(r2.Samples[0].Correct);
        Assert.Contains("answer mismatch: got [", r2.Samples[0].Reason);
    }

    [Fact]
    public async Task ModificationRecords_AreJudgedByTheTableHash_NotByTheAnswerText()
    {
        // Record 278 (UPDATE over a TEXT `No` column holding '?' cells, compared with a number).
        var bench = Bench(278);
        var rec = bench.SelectedRecords()[0];
        var wrong = await bench.EvaluateAsync(new ScriptedResponder(_ => "Action: Answer\nFinal Answer: " + rec.AnswerMd5), null, TestContext.Current.CancellationToken);
        Assert.False(wrong.Samples[0].Correct);
        var gold = await bench.EvaluateAsync(bench.CreateGoldResponder(), null, TestContext.Current.CancellationToken);
        Assert.True(gold.Samples[0].Correct, gold.Samples[0].Reason);
    }

    [Fact]
    public void UnknownSampleId_IsRejectedWithItsNumber()
    {
        var bench = Bench(360);
        var e = Assert.Throws<ArgumentException>(() => bench.SelectedRecords());
        Assert.Contains("360", e.Message);
    }

    [Fact]
    public async Task MissingDataFile_NamesThePath()
    {
        using var tmp = new TempDir();
        var bench = new AgentBenchDbBenchmark(new AgentBenchDbOptions { DataDir = tmp.Path });
        var e = await Assert.ThrowsAsync<FileNotFoundException>(() => bench.EvaluateAsync(new ScriptedResponder(_ => ""), null, TestContext.Current.CancellationToken));
        Assert.Contains(Path.Combine(tmp.Path, "agentbench_db"), e.Message);
    }
}
