using CycleQD.Runs.Final;

namespace CycleQD.Runs.Tests;

/// <summary>The final merge's weight search on objectives with a known answer.</summary>
public class FinalMergeSearchTests
{
    private static readonly double[] Grid = [0.2, 0.4, 0.6, 0.8, 1.0];

    /// <summary>Two tasks whose scores peak at different weights: task 0 wants w = target, task 1 is the same shape.</summary>
    private static Func<IReadOnlyList<double>, CancellationToken, Task<IReadOnlyList<double>>> Peaked(double[] target, List<double[]> calls) =>
        (w, _) =>
        {
            calls.Add(w.ToArray());
            double d = 0;
            for (int i = 0; i < w.Count; i++) d += (w[i] - target[i]) * (w[i] - target[i]);
            IReadOnlyList<double> s = [Math.Exp(-d), Math.Exp(-2 * d)];
            return Task.FromResult(s);
        };

    [Fact]
    public async Task SeparableObjective_FindsGridOptimum_WithinBudget_NoRepeats()
    {
        var calls = new List<double[]>();
        double[] target = [0.4, 1.0, 0.6];
        var r = await FinalMergeSearch.RunAsync(3, Grid, rounds: 2, Peaked(target, calls), null, TestContext.Current.CancellationToken);
        Assert.Equal(target, r.Best.Weights);
        Assert.True(calls.Count <= FinalMergeSearch.MaxEvaluations(3, Grid.Length, 2), $"{calls.Count} evaluations");
        Assert.Equal(calls.Count, calls.Select(c => string.Join(",", c)).Distinct().Count());
        Assert.Equal(calls.Count, r.Trials.Count);
        // The first K trials are the elites alone, the next G the shared weights.
        Assert.Equal([1.0, 0, 0], calls[0]);
        Assert.Equal([0.2, 0.2, 0.2], calls[3]);
    }

    [Fact]
    public async Task SingleEliteBest_IsKept_WhenNoMergeBeatsIt()
    {
        // Only elite 1 alone scores; every mixture is worse.
        Func<IReadOnlyList<double>, CancellationToken, Task<IReadOnlyList<double>>> f = (w, _) =>
        {
            bool alone = w[0] == 0 && w[1] == 1 && w[2] == 0;
            IReadOnlyList<double> s = alone ? [0.9, 0.5] : [0.1, 0.1];
            return Task.FromResult(s);
        };
        var r = await FinalMergeSearch.RunAsync(3, Grid, rounds: 1, f, null, TestContext.Current.CancellationToken);
        Assert.Equal([0.0, 1.0, 0.0], r.Best.Weights);
        Assert.Equal(0.7, r.Best.Average, 12);
    }

    [Fact]
    public async Task OneElite_TriesItselfAndTheGridOnly()
    {
        var calls = new List<double[]>();
        var r = await FinalMergeSearch.RunAsync(1, Grid, rounds: 3, Peaked([0.8], calls), null, TestContext.Current.CancellationToken);
        Assert.Equal(Grid.Length, calls.Count); // 1.0 is both "alone" and a grid value
        Assert.Equal([0.8], r.Best.Weights);
    }

    [Fact]
    public async Task Cancelled_StopsBeforeTheNextEvaluation()
    {
        using var cts = new CancellationTokenSource();
        int n = 0;
        Func<IReadOnlyList<double>, CancellationToken, Task<IReadOnlyList<double>>> f = (w, _) =>
        {
            if (++n == 4) cts.Cancel();
            IReadOnlyList<double> s = [0.5];
            return Task.FromResult(s);
        };
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => FinalMergeSearch.RunAsync(3, Grid, 1, f, null, cts.Token));
        Assert.Equal(4, n);
    }
}
