using CycleQD.Core.Archives;

namespace CycleQD.Core.Tests;

public class ArchiveTests
{
    private static readonly BinSpec[] Bins = [new(0, 1, 4), new(0, 1, 4), new(0, 1, 5)];

    [Fact]
    public void Archive_ThreeTasks_UsesOtherTasksAsBcInOrder()
    {
        var a = new Archive(1, Bins);
        Assert.Equal([0, 2], a.BcTasks);
        Assert.Equal(20, a.CellCount);
        // Task 0 score 0.3 → bin 1 of 4, task 2 score 0.9 → bin 4 of 5: flat 1·5 + 4.
        Assert.Equal(9, a.CellOf([0.3, 0.99, 0.9]));
        Assert.Equal([1, 4], a.Unflatten(9));
    }

    [Fact]
    public void TryInsert_EmptyEqualAndBetter_OnlyEmptyOrStrictlyBetterWin()
    {
        var a = new Archive(0, Bins);
        Assert.True(a.TryInsert(new Elite("a", [0.5, 0.3, 0.3], 0)));
        Assert.False(a.TryInsert(new Elite("b", [0.5, 0.3, 0.3], 1)));      // equal quality: keeps the incumbent
        Assert.False(a.TryInsert(new Elite("c", [0.4, 0.3, 0.3], 2)));
        Assert.True(a.TryInsert(new Elite("d", [0.6, 0.3, 0.3], 3)));
        Assert.True(a.TryInsert(new Elite("e", [0.1, 0.9, 0.3], 4)));       // another cell
        Assert.Equal(2, a.Cells.Count);
        Assert.Equal("d", a.Cells[a.CellOf([0, 0.3, 0.3])].Id);
        Assert.Equal(0.7, a.QdScore, 12);
        Assert.Equal(2.0 / 20, a.Coverage, 12);
        Assert.Equal(0.6, a.BestQuality);
    }

    [Fact]
    public void Archive_SingleTask_HasOneCell()
    {
        var a = new Archive(0, [new BinSpec(0, 1, 15)]);
        Assert.Equal(1, a.CellCount);
        Assert.Equal(0, a.CellOf([0.42]));
    }

    [Fact]
    public void MeanArchive_QualityIsTheMeanAndEveryTaskIsABehaviourAxis()
    {
        var a = Archive.Mean(Bins);
        Assert.True(a.IsMean);
        Assert.Equal(Archive.MeanTask, a.Task);
        Assert.Equal([0, 1, 2], a.BcTasks);
        Assert.Equal(4 * 4 * 5, a.CellCount);
        Assert.Equal((0.2 + 0.4 + 0.9) / 3, a.QualityOf([0.2, 0.4, 0.9]), 15);
        Assert.True(double.IsNaN(a.QualityOf([0.2, double.NaN, 0.9])));
        Assert.False(a.WouldAccept([0.2, double.NaN, 0.9]));
    }

    [Fact]
    public void MeanArchive_ReplacesOnAStrictlyHigherMeanOnly()
    {
        var a = Archive.Mean(Bins);
        // All three in one cell (bins [0.25, 0.5) on tasks 0 and 1, [0.2, 0.4) on task 2).
        double[] first = [0.30, 0.30, 0.30], higherMean = [0.26, 0.49, 0.21], lowerMeanHigherTask0 = [0.49, 0.26, 0.21];
        Assert.Equal(a.CellOf(first), a.CellOf(higherMean));
        Assert.Equal(a.CellOf(first), a.CellOf(lowerMeanHigherTask0));
        Assert.True(a.TryInsert(new Elite("first", first, 0)));
        Assert.True(a.TryInsert(new Elite("higher", higherMean, 1)));            // mean 0.3200 > 0.3000
        Assert.False(a.TryInsert(new Elite("task0", [0.49, 0.26, 0.205], 2)));   // mean 0.3183: a better task-0 score does not count
        Assert.False(a.TryInsert(new Elite("equal", [0.49, 0.26, 0.21], 3)));    // the same mean as the incumbent: kept
        Assert.Equal("higher", Assert.Single(a.Cells).Value.Id);
        Assert.Equal(higherMean.Average(), a.QdScore, 15);
        Assert.Equal(higherMean.Average(), a.BestQuality, 15);
    }
}
