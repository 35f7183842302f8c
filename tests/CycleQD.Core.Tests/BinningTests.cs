using CycleQD.Core.Archives;

namespace CycleQD.Core.Tests;

public class BinningTests
{
    // Expected bins are numpy's np.digitize(x, np.linspace(lo, hi, G + 1), right=True) - 1, clipped to [0, G - 1].
    [Theory]
    [InlineData(0.0, 0)]        // on the lower edge: below every edge but the first → clamped up to 0
    [InlineData(-0.3, 0)]       // below the range
    [InlineData(0.01, 0)]
    [InlineData(0.05, 0)]       // exactly on the first inner edge: right-closed, stays in bin 0
    [InlineData(0.0500001, 1)]
    [InlineData(0.1, 1)]
    [InlineData(0.7, 13)]
    [InlineData(0.7000001, 14)]
    [InlineData(0.75, 14)]      // on the upper edge
    [InlineData(0.9, 14)]       // above the range
    [InlineData(double.NaN, 0)]
    public void BinOf_ReferenceRange_MatchesDigitizeRightClosed(double score, int expected)
    {
        Assert.Equal(expected, new BinSpec(0, 0.75, 15).BinOf(score));
    }

    [Fact]
    public void Edges_Linspace_LastEdgeIsExactlyUpper()
    {
        var e = new BinSpec(0.1, 0.45, 7).Edges();
        Assert.Equal(8, e.Length);
        Assert.Equal(0.1, e[0]);
        Assert.Equal(0.45, e[7]);
        for (int i = 0; i < 7; i++) Assert.Equal(i * ((0.45 - 0.1) / 7) + 0.1, e[i]);
    }

    [Fact]
    public void BinOf_SingleBin_AlwaysZero()
    {
        var b = new BinSpec(0.2, 0.4, 1);
        foreach (double x in new[] { -1, 0.2, 0.3, 0.4, 5 }) Assert.Equal(0, b.BinOf(x));
    }

    [Fact]
    public void FromExpertScores_PaperRule_ScalesWeakestAndStrongest()
    {
        var b = BinSpec.FromExpertScores([0.3, 0.1, 0.5], 15);
        Assert.Equal(0.85 * 0.1, b.Lower, 15);
        Assert.Equal(1.15 * 0.5, b.Upper, 15);
    }

    [Theory]
    [InlineData(0.5, 0.5, 15, "must be below")]
    [InlineData(0.6, 0.5, 15, "must be below")]
    [InlineData(0.0, 1.0, 0, "at least 1")]
    [InlineData(double.NaN, 1.0, 3, "finite")]
    public void Validate_BadBins_ThrowNamingTheSetting(double lo, double hi, int g, string expected)
    {
        var e = Assert.Throws<ConfigurationException>(() => new BinSpec(lo, hi, g).Validate("archive.bounds.mbpp"));
        Assert.Contains("archive.bounds.mbpp", e.Message);
        Assert.Contains(expected, e.Message);
    }
}
