using CycleQD.Cpu.Merging;

namespace CycleQD.Cpu.Tests;

public class TaskVectorMergeTests
{
    // 300,007 takes the multi-threaded path (tensors of 2^18 elements and more).
    private static readonly int[] Lengths = [0, 1, 7, 33, 1031, 4099, 300_007];

    private static float[] RandomVector(System.Random rng, int n, double offset, double scale)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(offset + scale * (rng.NextDouble() * 2 - 1));
        return v;
    }

    private static (float[] Base, float[][] Experts) RandomModels(System.Random rng, int n, int experts)
    {
        var b = RandomVector(rng, n, 0, 1);
        var e = new float[experts][];
        for (int i = 0; i < experts; i++)
        {
            e[i] = new float[n];
            var tau = RandomVector(rng, n, 0, 0.05 * (i + 1));
            for (int j = 0; j < n; j++) e[i][j] = b[j] + tau[j];
        }
        return (b, e);
    }

    private static float[] Poisoned(int n)
    {
        var o = new float[n];
        Array.Fill(o, float.NaN);
        return o;
    }

    private static ReadOnlyMemory<float>[] Mem(float[][] e) => e.Select(x => (ReadOnlyMemory<float>)x).ToArray();

    private static void AssertClose(float[] got, double[] reference, double tolerance = 1e-6)
    {
        double err = Numerics.RelativeError(got, reference);
        Assert.True(err < tolerance, $"relative error {err:E3} (n = {got.Length})");
    }

    /// <summary>Float64 k-th largest |τ| by sorting; NaN for k = 0, 0 for k ≥ n.</summary>
    private static double ReferenceThreshold(float[] b, float[] e, double density)
    {
        int n = b.Length;
        long k = (long)Math.Floor(density * n);
        if (k == 0) return double.NaN;
        if (k >= n) return 0;
        var mags = Enumerable.Range(0, n).Select(j => Math.Abs((double)e[j] - b[j])).OrderByDescending(x => x).ToArray();
        return mags[k - 1];
    }

    private static double ReferenceDisjoint(double[] tau, float[] w, bool normalize)
    {
        double sum = 0;
        for (int i = 0; i < tau.Length; i++) sum += w[i] * tau[i];
        if (sum == 0) return 0;
        double acc = 0, ws = 0;
        for (int i = 0; i < tau.Length; i++)
            if (tau[i] != 0 && Math.Sign(tau[i]) == Math.Sign(sum)) { acc += w[i] * tau[i]; ws += w[i]; }
        return normalize ? (ws == 0 ? 0 : acc / ws) : acc;
    }

    [Theory]
    [InlineData(1, false, 21)]
    [InlineData(3, true, 22)]
    [InlineData(5, true, 23)]
    public void Linear_MatchesFp64Reference(int models, bool normalize, int seed)
    {
        var rng = new System.Random(seed);
        foreach (int n in Lengths)
        {
            var ms = Enumerable.Range(0, models).Select(_ => RandomVector(rng, n, 0, 1)).ToArray();
            var w = RandomVector(rng, models, 0.6, 0.3);
            var output = Poisoned(n);
            TaskVectorMerges.Linear(Mem(ms), w, normalize, output);
            double wsum = normalize ? w.Sum(x => (double)x) : 1;
            var reference = Enumerable.Range(0, n).Select(j => Enumerable.Range(0, models).Sum(i => (double)w[i] * ms[i][j]) / wsum).ToArray();
            AssertClose(output, reference);
        }
    }

    [Theory]
    [InlineData(1, 1.0f, false, 31)]
    [InlineData(3, 0.7f, false, 32)]
    [InlineData(3, 1.0f, true, 33)]
    [InlineData(8, 0.3f, false, 34)]
    public void TaskArithmetic_MatchesFp64Reference(int experts, float lambda, bool normalize, int seed)
    {
        var rng = new System.Random(seed);
        foreach (int n in Lengths)
        {
            var (b, e) = RandomModels(rng, n, experts);
            var w = RandomVector(rng, experts, 1, 0.5);
            var output = Poisoned(n);
            TaskVectorMerges.TaskArithmetic(b, Mem(e), w, lambda, normalize, output);
            double wsum = normalize ? w.Sum(x => (double)x) : 1;
            var reference = Enumerable.Range(0, n).Select(j =>
                b[j] + (double)lambda * Enumerable.Range(0, experts).Sum(i => (double)w[i] * ((double)e[i][j] - b[j])) / wsum).ToArray();
            AssertClose(output, reference);
        }
    }

    [Theory]
    [InlineData(3, 0.2, 1.0f, true, false, 41)]
    [InlineData(3, 0.5, 0.8f, true, true, 42)]
    [InlineData(2, 1.0, 1.0f, false, false, 43)]
    [InlineData(5, 0.05, 1.2f, true, true, 44)]
    public void Ties_MatchesFp64Reference(int experts, double density, float lambda, bool normalize, bool weighted, int seed)
    {
        var rng = new System.Random(seed);
        foreach (int n in Lengths)
        {
            var (b, e) = RandomModels(rng, n, experts);
            var w = weighted ? RandomVector(rng, experts, 1, 0.5) : Enumerable.Repeat(1f, experts).ToArray();
            var d = Enumerable.Repeat((float)density, experts).ToArray();
            var output = Poisoned(n);
            TaskVectorMerges.Ties(b, Mem(e), w, d, lambda, normalize, output);

            var thr = e.Select(x => ReferenceThreshold(b, x, density)).ToArray();
            var reference = new double[n];
            for (int j = 0; j < n; j++)
            {
                var tau = new double[experts];
                for (int i = 0; i < experts; i++)
                {
                    double t = (double)e[i][j] - b[j];
                    tau[i] = Math.Abs(t) >= thr[i] ? t : 0;
                }
                reference[j] = b[j] + lambda * ReferenceDisjoint(tau, w, normalize);
            }
            AssertClose(output, reference);
        }
    }

    [Fact]
    public void Ties_DensityWrittenAsDecimal_KeepsFloorOfDecimalTimesN()
    {
        // 0.7f is 0.699999988…; ⌊0.7 · 10⌋ = 7 entries must survive, not 6.
        float[] b = new float[10];
        float[] e = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        var output = Poisoned(10);
        TaskVectorMerges.Ties(b, [e], [1], [0.7f], 1, true, output);
        Assert.Equal([0, 0, 0, 4, 5, 6, 7, 8, 9, 10], output);
    }

    [Fact]
    public void Ties_ZeroDensity_ReturnsTheBase()
    {
        var rng = new System.Random(45);
        var (b, e) = RandomModels(rng, 257, 3);
        var output = Poisoned(b.Length);
        TaskVectorMerges.Ties(b, Mem(e), [1, 1, 1], [0, 0, 0], 1, true, output);
        Assert.Equal(b, output);
    }

    [Theory]
    [InlineData(0.2, 51)]
    [InlineData(0.013, 52)]
    [InlineData(0.9, 53)]
    public void MagnitudeThreshold_OverChunks_EqualsSortedReference(double density, int seed)
    {
        var rng = new System.Random(seed);
        // Three "tensors" of different sizes, one of them with exact repeats of one magnitude.
        int[] sizes = [5000, 17, 70001];
        var bs = sizes.Select(n => RandomVector(rng, n, 0, 1)).ToArray();
        var es = sizes.Select((n, t) => bs[t].Select(x => x + (float)(0.1 * (rng.NextDouble() * 2 - 1))).ToArray()).ToArray();
        for (int j = 0; j < 100; j++) es[1][j % 17] = bs[1][j % 17] + 0.25f;

        long total = sizes.Sum();
        var select = new MagnitudeThreshold(MagnitudeThreshold.KeepCount(density, total));
        for (int t = 0; t < sizes.Length; t++)
            for (int off = 0; off < sizes[t]; off += 4096)
            {
                int len = Math.Min(4096, sizes[t] - off);
                select.CountCoarse(bs[t].AsSpan(off, len), es[t].AsSpan(off, len));
            }
        if (select.NeedsFinePass)
            for (int t = sizes.Length - 1; t >= 0; t--) select.CountFine(bs[t], es[t]);

        var mags = new List<float>();
        for (int t = 0; t < sizes.Length; t++)
            for (int j = 0; j < sizes[t]; j++) mags.Add(MathF.Abs(es[t][j] - bs[t][j]));
        mags.Sort((x, y) => y.CompareTo(x));
        long k = (long)Math.Floor(density * total);
        Assert.Equal(mags[(int)k - 1], select.Threshold);
    }

    [Theory]
    [InlineData(3, 0.3, false, false, 61)]
    [InlineData(3, 0.5, true, false, 62)]
    [InlineData(4, 0.7, true, true, 63)]
    [InlineData(2, 1.0, false, true, 64)]
    public void Dare_MatchesFp64Reference(int experts, double density, bool rescale, bool signConsensus, int seed)
    {
        var rng = new System.Random(seed);
        foreach (int n in Lengths)
        {
            var (b, e) = RandomModels(rng, n, experts);
            var w = RandomVector(rng, experts, 1, 0.5);
            var d = Enumerable.Range(0, experts).Select(i => (float)Math.Min(1.0, density + 0.05 * i)).ToArray();
            var options = new DareOptions(Seed: 0x1234_5678_9ABCUL + (ulong)seed, TensorIndex: (uint)n, Lambda: 0.9f,
                Rescale: rescale, Normalize: signConsensus, SignConsensus: signConsensus);
            var output = Poisoned(n);
            TaskVectorMerges.Dare(b, Mem(e), w, d, options, output);

            var reference = new double[n];
            for (int j = 0; j < n; j++)
            {
                var tau = new double[experts];
                for (int i = 0; i < experts; i++)
                    tau[i] = TaskVectorMerges.DareKeeps(options.Seed, options.TensorIndex, i, j, d[i])
                        ? ((double)e[i][j] - b[j]) * (rescale ? 1.0 / d[i] : 1.0) : 0;
                double merged = signConsensus
                    ? ReferenceDisjoint(tau, w, normalize: true)
                    : Enumerable.Range(0, experts).Sum(i => w[i] * tau[i]);
                reference[j] = b[j] + options.Lambda * merged;
            }
            AssertClose(output, reference);
        }
    }

    [Fact]
    public void Dare_InChunks_EqualsWholeTensorBitForBit()
    {
        var rng = new System.Random(71);
        var (b, e) = RandomModels(rng, 300_007, 3);
        float[] w = [1, 0.5f, 0.25f], d = [0.3f, 0.5f, 0.9f];
        var options = new DareOptions(Seed: 99, TensorIndex: 4, SignConsensus: true);
        var whole = Poisoned(b.Length);
        TaskVectorMerges.Dare(b, Mem(e), w, d, options, whole);
        var chunked = Poisoned(b.Length);
        for (int off = 0; off < b.Length; off += 10_001)
        {
            int len = Math.Min(10_001, b.Length - off);
            var part = e.Select(x => (ReadOnlyMemory<float>)x.AsMemory(off, len)).ToArray();
            TaskVectorMerges.Dare(b.AsSpan(off, len), part, w, d, options with { FirstElement = off }, chunked.AsSpan(off, len));
        }
        Assert.Equal(whole, chunked);
    }

    [Fact]
    public void DareKeeps_FractionMatchesDensity_AndDependsOnTensorAndExpert()
    {
        const int n = 200_000;
        int kept = 0, differTensor = 0, differExpert = 0;
        for (int j = 0; j < n; j++)
        {
            bool k = TaskVectorMerges.DareKeeps(7, 0, 0, j, 0.3f);
            if (k) kept++;
            if (k != TaskVectorMerges.DareKeeps(7, 1, 0, j, 0.3f)) differTensor++;
            if (k != TaskVectorMerges.DareKeeps(7, 0, 1, j, 0.3f)) differExpert++;
        }
        // Binomial(n, 0.3): sd = 205; 5 sd either side.
        Assert.InRange(kept, 60_000 - 1025, 60_000 + 1025);
        // Independent masks disagree with probability 2 · 0.3 · 0.7 = 0.42.
        Assert.InRange(differTensor, 84_000 - 1200, 84_000 + 1200);
        Assert.InRange(differExpert, 84_000 - 1200, 84_000 + 1200);
    }

    [Fact]
    public void TaskArithmetic_ExpertOfOtherLength_NamesTheModel()
    {
        var e = new ReadOnlyMemory<float>[] { new float[4], new float[5] };
        var ex = Assert.Throws<ArgumentException>(() => TaskVectorMerges.TaskArithmetic(new float[4], e, [1, 1], 1, false, new float[4]));
        Assert.Contains("model 1 has 5 elements, expected 4", ex.Message);
    }

    [Fact]
    public void Dare_DensityZero_IsRejected()
    {
        var e = new ReadOnlyMemory<float>[] { new float[4] };
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() =>
            TaskVectorMerges.Dare(new float[4], e, [1], [0f], new DareOptions(1, 0), new float[4]));
        Assert.Contains("(0, 1]", ex.Message);
    }

    [Fact]
    public void Linear_WeightsSummingToZero_CannotBeNormalized()
    {
        var m = new ReadOnlyMemory<float>[] { new float[3], new float[3] };
        var ex = Assert.Throws<ArgumentException>(() => TaskVectorMerges.Linear(m, [1, -1], true, new float[3]));
        Assert.Contains("sum to 0", ex.Message);
    }
}
