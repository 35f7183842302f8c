using System.Globalization;

namespace CycleQD.Runs.Final;

/// <summary>One merge tried by <see cref="FinalMergeSearch"/>: the weights and the scores they got.</summary>
/// <param name="Weights">wᵢ per elite (the model is base + Σᵢ wᵢ (eliteᵢ − base)).</param>
/// <param name="Scores">Score per task on the search split.</param>
public sealed record MergeTrial(IReadOnlyList<double> Weights, IReadOnlyList<double> Scores)
{
    /// <summary>Mean score over the tasks: the objective.</summary>
    public double Average => Scores.Average();
}

/// <summary>What the search settled on and what it cost.</summary>
/// <param name="Best">The chosen weights and their scores.</param>
/// <param name="Trials">Every distinct weight vector evaluated, in order.</param>
public sealed record MergeSearchResult(MergeTrial Best, IReadOnlyList<MergeTrial> Trials);

/// <summary>
/// Chooses the weights of a linear task-vector merge of K elites, base + Σᵢ wᵢ (eliteᵢ − base), by
/// the mean score over the tasks on the search split. Three phases, each keeping the incumbent
/// unless a trial is strictly better:
/// <list type="number">
/// <item>each elite alone (wᵢ = 1, the others 0): K trials;</item>
/// <item>one shared weight, wᵢ = g for every i, for each g of the grid (task arithmetic over the elites): G trials;</item>
/// <item><c>rounds</c> coordinate sweeps: for i = 1..K, every other grid value for wᵢ with the rest held: up to K · G trials per round (the incumbent's own value is not tried again).</item>
/// </list>
/// A weight vector already tried is not evaluated again, so the cost is at most
/// K + G + rounds · K · G evaluations, and the result is never worse on the search split
/// than the best single elite (up to float32 rounding of the merge).
/// </summary>
public static class FinalMergeSearch
{
    /// <param name="elites">K ≥ 1.</param>
    /// <param name="grid">Candidate weight values (non-empty).</param>
    /// <param name="rounds">Coordinate sweeps (≥ 0).</param>
    /// <param name="evaluate">Scores the merge with the given weights on the search split (one score per task).</param>
    /// <param name="onTrial">Called after each new evaluation (progress).</param>
    /// <param name="cancellationToken">Stops between evaluations.</param>
    public static async Task<MergeSearchResult> RunAsync(int elites, IReadOnlyList<double> grid, int rounds,
        Func<IReadOnlyList<double>, CancellationToken, Task<IReadOnlyList<double>>> evaluate,
        Action<MergeTrial>? onTrial = null, CancellationToken cancellationToken = default)
    {
        if (elites < 1) throw new ArgumentOutOfRangeException(nameof(elites), elites, "at least one elite");
        if (grid.Count == 0) throw new ArgumentException("empty weight grid", nameof(grid));
        if (rounds < 0) throw new ArgumentOutOfRangeException(nameof(rounds), rounds, "must be ≥ 0");
        var seen = new Dictionary<string, MergeTrial>(StringComparer.Ordinal);
        var trials = new List<MergeTrial>();
        MergeTrial? best = null;

        async Task Try(double[] w)
        {
            string key = string.Join(",", w.Select(x => x.ToString("R", CultureInfo.InvariantCulture)));
            if (!seen.TryGetValue(key, out var trial))
            {
                cancellationToken.ThrowIfCancellationRequested();
                var scores = await evaluate(w, cancellationToken).ConfigureAwait(false);
                trial = new MergeTrial(w, scores.ToArray());
                seen.Add(key, trial);
                trials.Add(trial);
                onTrial?.Invoke(trial);
            }
            if (best is null || trial.Average > best.Average) best = trial;
        }

        for (int i = 0; i < elites; i++)
        {
            var w = new double[elites];
            w[i] = 1;
            await Try(w).ConfigureAwait(false);
        }
        foreach (double g in grid)
            await Try(Enumerable.Repeat(g, elites).ToArray()).ConfigureAwait(false);
        if (elites > 1)
            for (int r = 0; r < rounds; r++)
                for (int i = 0; i < elites; i++)
                    foreach (double g in grid)
                    {
                        var w = best!.Weights.ToArray();
                        w[i] = g;
                        await Try(w).ConfigureAwait(false);
                    }
        return new MergeSearchResult(best!, trials);
    }

    /// <summary>Largest number of evaluations <see cref="RunAsync"/> can make.</summary>
    public static int MaxEvaluations(int elites, int gridSize, int rounds) =>
        elites + gridSize + (elites > 1 ? rounds * elites * gridSize : 0);
}
