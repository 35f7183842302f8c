using CycleQD.Core.Archives;
using CycleQD.Runs.Final;

namespace CycleQD.Runs.Tests;

/// <summary>Which elites the final merge searches over: archive bests, then generalists.</summary>
public class FinalCandidatesTests
{
    // Three tasks; scores are (code, db, os) on the search split.
    private static readonly Elite ExpertCode = new("expert:code", [0.9, 0.0, 0.0], 0);
    private static readonly Elite ExpertDb = new("expert:db", [0.0, 0.95, 0.0], 0);
    private static readonly Elite ExpertOs = new("expert:os", [0.0, 0.0, 0.9], 0);
    private static readonly Elite DbOs = new("c0ffee01", [0.0, 0.9, 0.16], 40);     // mean 0.353
    private static readonly Elite CodeDb = new("c0ffee02", [0.5, 0.5, 0.0], 12);     // mean 0.333
    private static readonly Elite CodeDbLate = new("c0ffee03", [0.5, 0.5, 0.0], 30); // same mean, later
    private static readonly Elite Weak = new("c0ffee04", [0.1, 0.1, 0.1], 5);        // mean 0.1
    private static readonly Elite Unscored = new("c0ffee05", [0.2, double.NaN, 0.05], 7);

    /// <summary>
    /// A hand-made run: each expert leads its own archive; DbOs sits in two archives, CodeDb and
    /// ExpertDb in two; Unscored has a missing score.
    /// </summary>
    private static IReadOnlyList<(int Task, IReadOnlyDictionary<int, Elite> Cells)> Archives() =>
    [
        (0, new Dictionary<int, Elite> { [0] = ExpertCode, [7] = CodeDb, [9] = Weak, [20] = CodeDbLate }),
        (1, new Dictionary<int, Elite> { [3] = ExpertDb, [4] = DbOs, [8] = CodeDb }),
        (2, new Dictionary<int, Elite> { [1] = ExpertOs, [5] = DbOs, [6] = ExpertDb, [11] = Unscored }),
    ];

    private static string[] Ids(IEnumerable<FinalCandidate> c) => c.Select(x => x.Elite.Id).ToArray();

    [Fact]
    public void Select_BestOnly_TakesEachArchiveBestInArchiveOrder()
    {
        var c = FinalCandidates.Select(Archives(), top: 1, generalists: 0);
        Assert.Equal(["expert:code", "expert:db", "expert:os"], Ids(c));
        Assert.All(c, x => Assert.Equal((FinalCandidateReason.ArchiveBest, 1), (x.Reason, x.Rank)));
        Assert.Equal([0, 1, 2], c.Select(x => x.Archive));
        Assert.Equal([0, 3, 1], c.Select(x => x.Cell));
    }

    [Fact]
    public void Select_Generalists_HighestMeanFirst_DedupedAgainstBestsAndEachOther()
    {
        // Means: DbOs 0.353, CodeDb 0.333 (gen 12), CodeDbLate 0.333 (gen 30), Weak 0.1; the experts
        // (means 0.3, 0.317, 0.3) are already taken as bests, and Unscored has no mean.
        var c = FinalCandidates.Select(Archives(), top: 1, generalists: 3);
        Assert.Equal(["expert:code", "expert:db", "expert:os", "c0ffee01", "c0ffee02", "c0ffee03"], Ids(c));
        var g = c.Skip(3).ToArray();
        Assert.All(g, x => Assert.Equal(FinalCandidateReason.Generalist, x.Reason));
        Assert.Equal([1, 2, 3], g.Select(x => x.Rank));
        // An elite held by several archives is named where it is first found: DbOs in archive 1, cell 4.
        Assert.Equal((1, 4), (g[0].Archive, g[0].Cell));
        Assert.Equal((0, 7), (g[1].Archive, g[1].Cell));
        Assert.Equal(0.9 + 0.16, 3 * g[0].MeanScore, 12);
    }

    [Fact]
    public void Select_MoreGeneralistsThanElites_TakesWhatThereIs()
    {
        var c = FinalCandidates.Select(Archives(), top: 1, generalists: 7);
        Assert.Equal(["expert:code", "expert:db", "expert:os", "c0ffee01", "c0ffee02", "c0ffee03", "c0ffee04"], Ids(c));
        Assert.Equal(Ids(c).Distinct().Count(), c.Count);
    }

    [Fact]
    public void Select_SharedBest_IsTakenOnce_AndTopTwoRanksInsideArchives()
    {
        // DbOs is second in archive 1 and again in archive 2: taken once, as archive 1's rank 2.
        var c = FinalCandidates.Select(Archives(), top: 2, generalists: 1);
        Assert.Equal(["expert:code", "c0ffee02", "expert:db", "c0ffee01", "expert:os", "c0ffee03"], Ids(c));
        Assert.Equal([1, 2, 1, 2, 1, 1], c.Select(x => x.Rank));
        Assert.Equal(FinalCandidateReason.Generalist, c[^1].Reason);
    }
}
