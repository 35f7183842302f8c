using CycleQD.Tasks.AgentBenchDb;
using CycleQD.Testing;

namespace CycleQD.Tasks.Tests;

/// <summary>
/// The gold responder on a private MariaDB (the server is started and stopped by the evaluator).
/// Every exception below is explained in docs/evaluation.md ("AgentBench DB").
/// </summary>
public sealed class AgentBenchDbGoldTests
{
    private static AgentBenchDbBenchmark Bench(DbLayout layout)
    {
        string data = TestPaths.RequireSharedData();
        TestPaths.RequireSharedData("agentbench_db", "data_dbbench_standard_dev.jsonl");
        return new AgentBenchDbBenchmark(new AgentBenchDbOptions { DataDir = data, Layout = layout });
    }

    [Fact]
    public async Task GoldResponder_IsolatedLayout_FailsOnlyRecord225WhoseGoldHashNeedsTheMergedTable()
    {
        var bench = Bench(DbLayout.Isolated);
        var report = await bench.EvaluateAsync(bench.CreateGoldResponder(), null, TestContext.Current.CancellationToken);
        Assert.Equal(341, report.Samples.Count);
        var failed = report.Samples.Where(s => !s.Correct).ToList();
        var only = Assert.Single(failed);
        Assert.Equal("225", only.Id);
        Assert.Contains("table hash mismatch", only.Reason);
        Assert.Equal(340.0 / 341, report.Score, 12);
    }

    [Fact]
    public async Task GoldResponder_ReferenceLayout_FailsExactlyTheCollidingModificationRecords()
    {
        var bench = Bench(DbLayout.Reference);
        var records = bench.SelectedRecords();
        var report = await bench.EvaluateAsync(bench.CreateGoldResponder(), null, TestContext.Current.CancellationToken);
        var byId = records.ToDictionary(r => r.Index.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var nameCount = records.GroupBy(r => r.TableName).ToDictionary(g => g.Key, g => g.Count());

        // Every record whose table name is unique among the 341 ids, and every query record, passes.
        foreach (var s in report.Samples)
        {
            var r = byId[s.Id];
            if (nameCount[r.TableName] == 1 || !r.IsModification) Assert.True(s.Correct, $"{s.Id}: {s.Reason}");
        }
        // The failures: the colliding INSERT/UPDATE records whose table was dropped by the partner
        // that finished first ("Unknown database"), or whose table holds the partner's rows too.
        int[] expected = [105, 108, 121, 122, 123, 124, 133, 136, 137, 143, 145, 150, 165, 173, 196, 211, 221, 225, 226, 227,
                          229, 231, 239, 241, 245, 247, 248, 252, 267, 297, 322, 330, 343, 349, 353];
        var failed = report.Samples.Where(s => !s.Correct).Select(s => int.Parse(s.Id, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(expected, failed);
        int dropped = report.Samples.Count(s => s.Reason.Contains("1049 (42000): Unknown database", StringComparison.Ordinal));
        Assert.Equal(24, dropped);
        Assert.Equal(306.0 / 341, report.Score, 12);
    }
}
