using CycleQD.Tasks.AgentBenchOs;
using CycleQD.Tasks.Scripted;
using CycleQD.Testing;

namespace CycleQD.Tasks.Tests;

/// <summary>Shell commands that break their own sample's environment: that sample fails with a reason, the others are judged.</summary>
public sealed class AgentBenchOsMisbehaviourTests
{
    /// <summary>
    /// The turn limit here. The other sample's gold turns run under it too, beside a shell that floods
    /// output, on a 2-core machine that may be shared with other builds: they need seconds there, so
    /// the limit (and the silence timeout, above it) leaves them a wide margin.
    /// </summary>
    private static readonly TimeSpan TurnLimit = TimeSpan.FromSeconds(10);

    private static AgentBenchOsBenchmark Bench(params int[] ids) =>
        new(new AgentBenchOsOptions
        {
            DataDir = TestPaths.RequireSharedData(), Ids = ids, Repeats = 1, TurnTimeout = TimeSpan.FromSeconds(30), TurnLimit = TurnLimit,
        });

    /// <summary>The gold responder, except that the sample whose prompt holds <paramref name="marker"/> sends <paramref name="command"/>.</summary>
    private static ScriptedResponder GoldExcept(AgentBenchOsBenchmark bench, string marker, string command)
    {
        var gold = bench.CreateGoldResponder();
        return new ScriptedResponder(req =>
            req.Prompt.Contains(marker, StringComparison.Ordinal)
                ? $"Act: bash\n\n```bash\n{command}\n```"
                : gold.GenerateAsync([req]).Result[0].Text);
    }

    private static string OpeningOf(AgentBenchOsBenchmark bench, int index) =>
        bench.SelectedSamples()[index].Problem[^1].Content;

    [Fact]
    public async Task KillingEveryProcess_FailsThatSample_AndTheOthersAreJudged()
    {
        var bench = Bench(1, 2);
        var report = await bench.EvaluateAsync(GoldExcept(bench, OpeningOf(bench, 0), "kill -9 -1"), null, TestContext.Current.CancellationToken);
        Assert.Equal(2, report.Samples.Count);
        Assert.False(report.Samples[0].Correct);
        Assert.Contains("supervisor", report.Samples[0].Reason);
        Assert.True(report.Samples[1].Correct, report.Samples[1].Reason);
    }

    [Fact]
    public async Task AShellThatNeverStopsPrinting_EndsItsTurnAtTheLimit_AndTheOthersAreJudged()
    {
        var bench = Bench(1, 2);
        var report = await bench.EvaluateAsync(GoldExcept(bench, OpeningOf(bench, 0), "yes 'output without end'"), null, TestContext.Current.CancellationToken);
        Assert.Equal(2, report.Samples.Count);
        Assert.False(report.Samples[0].Correct);
        Assert.Contains($"{TurnLimit.TotalSeconds:0} s in all", report.Samples[0].Reason);
        Assert.True(report.Samples[1].Correct, report.Samples[1].Reason);
    }

    [Fact]
    public async Task CallerCancellation_StillCancelsTheEvaluation()
    {
        var bench = new AgentBenchOsBenchmark(new AgentBenchOsOptions
        {
            DataDir = TestPaths.RequireSharedData(), Ids = [1], Repeats = 1, TurnTimeout = TimeSpan.FromSeconds(60), TurnLimit = TimeSpan.FromSeconds(60),
        });
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var responder = new ScriptedResponder(_ =>
        {
            cts.CancelAfter(TimeSpan.FromSeconds(2));
            return "Act: bash\n\n```bash\nsleep 50\n```";
        });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => bench.EvaluateAsync(responder, null, cts.Token));
    }
}
