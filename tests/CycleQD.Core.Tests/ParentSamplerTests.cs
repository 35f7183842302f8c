using CycleQD.Core.Archives;
using CycleQD.Core.Sampling;

namespace CycleQD.Core.Tests;

public class ParentSamplerTests
{
    // Task 0's archive, one BC (task 1) in 4 bins over [0, 1]: elites at BC bins 0, 2, 3 with qualities 0.2, 0.6, 1.0.
    private static Archive SmallArchive()
    {
        var a = new Archive(0, [new BinSpec(0, 1, 4), new BinSpec(0, 1, 4)]);
        a.TryInsert(new Elite("x", [0.2, 0.1], 0));
        a.TryInsert(new Elite("y", [0.6, 0.6], 1));
        a.TryInsert(new Elite("z", [1.0, 0.9], 2));
        return a;
    }

    [Fact]
    public void Probabilities_PaperNormaliser_MatchHandComputation()
    {
        // quality → 0.5, 0.65, 0.8; BC bin 0, 2, 3 → 0.5, 0.7, 0.8; products 0.25, 0.455, 0.64.
        double[] p = ParentSampler.Probabilities(SmallArchive(), new SamplingOptions());
        double sum = 0.25 + 0.455 + 0.64;
        Assert.Equal(0.25 / sum, p[0], 14);
        Assert.Equal(0.455 / sum, p[1], 14);
        Assert.Equal(0.64 / sum, p[2], 14);
    }

    [Fact]
    public void Probabilities_ReferenceNormaliser_MatchHandComputation()
    {
        // quality → 0.5, 0.9, 1.3; BC → 0.5, 0.5 + 2·0.8/3, 1.3.
        double[] p = ParentSampler.Probabilities(SmallArchive(), new SamplingOptions(Normaliser: SamplingNormaliser.Reference));
        double[] raw = [0.25, 0.9 * (0.5 + 1.6 / 3), 1.69];
        double sum = raw.Sum();
        for (int i = 0; i < 3; i++) Assert.Equal(raw[i] / sum, p[i], 14);
    }

    [Fact]
    public void Probabilities_RandomSampling_Uniform()
    {
        Assert.All(ParentSampler.Probabilities(SmallArchive(), new SamplingOptions(SamplingKind.Random)), x => Assert.Equal(1.0 / 3, x, 15));
    }

    [Fact]
    public void Draw_ManyGenerations_FrequenciesMatchProbabilities()
    {
        var a = SmallArchive();
        var o = new SamplingOptions();
        double[] p = ParentSampler.Probabilities(a, o);
        string[] ids = ["x", "y", "z"];
        const int n = 30_000;
        var first = new int[3];
        var second = new int[3];
        for (uint g = 0; g < n; g++)
        {
            var (f, s) = ParentSampler.Draw(a, o, 12345, g);
            Assert.NotEqual(f.Id, s.Id);
            first[Array.IndexOf(ids, f.Id)]++;
            second[Array.IndexOf(ids, s.Id)]++;
        }
        for (int j = 0; j < 3; j++)
        {
            // Second parent: P(j) = Σ_{i≠j} p_i · p_j / (1 − p_i).
            double q = 0;
            for (int i = 0; i < 3; i++) if (i != j) q += p[i] * p[j] / (1 - p[i]);
            AssertWithin(first[j], n, p[j]);
            AssertWithin(second[j], n, q);
        }

        static void AssertWithin(int count, int n, double prob)
        {
            double se = Math.Sqrt(n * prob * (1 - prob));
            Assert.InRange(count, n * prob - 5 * se, n * prob + 5 * se);
        }
    }

    [Fact]
    public void Draw_SameSeedAndGeneration_SameParents()
    {
        var a = SmallArchive();
        Assert.Equal(ParentSampler.Draw(a, new SamplingOptions(), 9, 77), ParentSampler.Draw(a, new SamplingOptions(), 9, 77));
    }

    [Fact]
    public void Draw_SingleElite_ReturnsItTwice()
    {
        var a = new Archive(0, [new BinSpec(0, 1, 4), new BinSpec(0, 1, 4)]);
        a.TryInsert(new Elite("only", [0.5, 0.5], 0));
        var (f, s) = ParentSampler.Draw(a, new SamplingOptions(), 1, 0);
        Assert.Equal("only", f.Id);
        Assert.Equal("only", s.Id);
    }

    [Fact]
    public void Pick_ExcludedIndex_NeverReturned()
    {
        double[] p = [0.2, 0.5, 0.3];
        for (double u = 0; u < 1; u += 0.01) Assert.NotEqual(1, ParentSampler.Pick(p, u, 1));
        Assert.Equal(0, ParentSampler.Pick(p, 0.0, -1));
        Assert.Equal(2, ParentSampler.Pick(p, 0.9999, -1));
    }
}
