using CycleQD.Core.Archives;

namespace CycleQD.Runs.Final;

/// <summary>Why an elite is among the final merge's candidates.</summary>
internal enum FinalCandidateReason
{
    /// <summary>Among the best <c>top</c> elites of its archive by the archive's own task.</summary>
    ArchiveBest,

    /// <summary>Among the elites of all archives with the highest mean search-split score over all tasks.</summary>
    Generalist,
}

/// <summary>A task and the archive its best elites are taken from (its own, or the mean-quality archive of a run without the cycle).</summary>
internal sealed record TaskArchive(int Task, Archive Archive);

/// <summary>One elite the final merge searches weights for.</summary>
/// <param name="Archive">Position of the archive it was taken from in the list given to <see cref="FinalCandidates.Select"/>.</param>
/// <param name="Cell">Its flat cell in that archive.</param>
/// <param name="Elite">The elite (its id is the weight set's hash).</param>
/// <param name="Reason">Why it was taken.</param>
/// <param name="Rank">1-based: its rank inside its archive (<see cref="FinalCandidateReason.ArchiveBest"/>) or among the generalists.</param>
internal sealed record FinalCandidate(int Archive, int Cell, Elite Elite, FinalCandidateReason Reason, int Rank)
{
    /// <summary>Mean of the elite's search-split scores over all tasks.</summary>
    public double MeanScore => Elite.Scores.Average();
}

/// <summary>
/// The elites the final merge searches over: the best <c>top</c> of every archive, in archive order,
/// then (with final_merge.candidates: best+generalists) the <c>generalists</c> elites of all archives with
/// the highest mean search-split score over all tasks. Each weight set (elite id) appears once: a later
/// archive's best that an earlier archive already gave is skipped, and the generalists are drawn from
/// the elites not already taken, so K = (distinct archive bests) + generalists at most.
/// </summary>
internal static class FinalCandidates
{
    /// <param name="archives">Each archive's quality task index and occupied cells (flat index → elite).</param>
    /// <param name="top">Best elites taken from each archive (≥ 1).</param>
    /// <param name="generalists">Generalists added after them (≥ 0).</param>
    public static IReadOnlyList<FinalCandidate> Select(IReadOnlyList<(int Task, IReadOnlyDictionary<int, Elite> Cells)> archives, int top, int generalists)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(top, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(generalists);
        var chosen = new List<FinalCandidate>();
        var taken = new HashSet<string>(StringComparer.Ordinal);
        for (int a = 0; a < archives.Count; a++)
        {
            int rank = 0;
            foreach (var (cell, e) in RankedByQuality(archives[a]).Take(top))
            {
                rank++;
                if (taken.Add(e.Id)) chosen.Add(new FinalCandidate(a, cell, e, FinalCandidateReason.ArchiveBest, rank));
            }
        }
        if (generalists == 0) return chosen;

        // Every distinct elite once, where it is first found (archive order, then cell order); an elite
        // with a missing (NaN) score has no mean and is not a generalist.
        var pool = new List<(int Archive, int Cell, Elite Elite)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int a = 0; a < archives.Count; a++)
            foreach (var (cell, e) in archives[a].Cells.OrderBy(kv => kv.Key).Select(kv => (kv.Key, kv.Value)))
                if (!taken.Contains(e.Id) && !e.Scores.Any(double.IsNaN) && seen.Add(e.Id))
                    pool.Add((a, cell, e));
        int r = 0;
        foreach (var (a, cell, e) in pool.OrderByDescending(p => p.Elite.Scores.Average()).ThenBy(p => p.Elite.Generation)
                     .ThenBy(p => p.Elite.Id, StringComparer.Ordinal).Take(generalists))
            chosen.Add(new FinalCandidate(a, cell, e, FinalCandidateReason.Generalist, ++r));
        return chosen;
    }

    /// <summary>An archive's elites, best first: quality, then earlier generation, then id, then cell.</summary>
    public static IEnumerable<(int Cell, Elite Elite)> RankedByQuality((int Task, IReadOnlyDictionary<int, Elite> Cells) archive) =>
        archive.Cells.Select(kv => (kv.Key, kv.Value))
            .OrderByDescending(x => x.Value.Scores[archive.Task]).ThenBy(x => x.Value.Generation)
            .ThenBy(x => x.Value.Id, StringComparer.Ordinal).ThenBy(x => x.Key);

    /// <summary>The archives in the form <see cref="Select"/> takes.</summary>
    public static IReadOnlyList<(int Task, IReadOnlyDictionary<int, Elite> Cells)> Of(IReadOnlyList<TaskArchive> views) =>
        views.Select(v => (v.Task, v.Archive.Cells)).ToArray();

    /// <summary>
    /// The archive each task's best elites come from: with the cycle, task t's own archive; without it
    /// (one mean-quality archive), that archive for every task, ranked by the task's own score.
    /// </summary>
    public static IReadOnlyList<TaskArchive> PerTask(IReadOnlyList<Archive> archives, int taskCount) =>
        archives.Count == 1 && archives[0].IsMean
            ? Enumerable.Range(0, taskCount).Select(t => new TaskArchive(t, archives[0])).ToArray()
            : archives.Select(a => new TaskArchive(a.Task, a)).ToArray();
}
