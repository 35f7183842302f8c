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

    /// <summary>
    /// The entries a trim keeps, from the definition: the k = ⌊density · n⌋ largest |τ| (τ = e − b in
    /// float32), ties at equal magnitude going to the lower index; everything for density ≥ 1.
    /// </summary>
    private static bool[] ReferenceKept(float[] b, float[] e, double density)
    {
        int n = b.Length;
        var kept = new bool[n];
        long k = density >= 1 ? n : (long)Math.Floor(density * n);
        var order = Enumerable.Range(0, n).OrderByDescending(j => MathF.Abs(e[j] - b[j])).ThenBy(j => j).Take((int)k);
        foreach (int j in order) kept[j] = true;
        return kept;
    }

    /// <summary>
    /// TIES's consensus from the definition, in float64: dᵢ = wᵢ τᵢ; elected + when Σ dᵢ ≥ 0, else −;
    /// the nonzero dᵢ of that sign are summed and, normalizing, divided by their wᵢ's sum (by 1 when it is 0).
    /// </summary>
    private static double ReferenceDisjoint(double[] tau, float[] w, bool normalize)
    {
        double sum = 0;
        for (int i = 0; i < tau.Length; i++) sum += w[i] * tau[i];
        int elected = sum >= 0 ? 1 : -1;
        double acc = 0, ws = 0;
        for (int i = 0; i < tau.Length; i++)
        {
            double d = w[i] * tau[i];
            if (d != 0 && Math.Sign(d) == elected) { acc += d; ws += w[i]; }
        }
        return normalize ? acc / (ws == 0 ? 1 : ws) : acc;
    }

    /// <summary>Σ|τ| / Σ|τ̂| in float64, 1 when either is below 1e-7.</summary>
    private static double ReferenceL1Gain(double[] tau, double[] kept)
    {
        double before = tau.Sum(Math.Abs), after = kept.Sum(Math.Abs);
        return before < 1e-7 || after < 1e-7 ? 1 : before / after;
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
    [InlineData(3, 0.2, 1.0f, true, false, false, 41)]
    [InlineData(3, 0.5, 0.8f, true, true, false, 42)]
    [InlineData(2, 1.0, 1.0f, false, false, false, 43)]
    [InlineData(5, 0.05, 1.2f, true, true, false, 44)]
    [InlineData(3, 0.3, 1.0f, true, true, true, 45)]
    [InlineData(2, 0.6, 0.5f, false, false, true, 46)]
    public void Ties_MatchesFp64Reference(int experts, double density, float lambda, bool normalize, bool weighted, bool rescale, int seed)
    {
        var rng = new System.Random(seed);
        foreach (int n in Lengths)
        {
            if (n > 0 && Math.Floor(density * n) == 0) continue; // a density that keeps nothing is an error (tested apart)
            var (b, e) = RandomModels(rng, n, experts);
            var w = weighted ? RandomVector(rng, experts, 1, 0.5) : Enumerable.Repeat(1f, experts).ToArray();
            var d = Enumerable.Repeat((float)density, experts).ToArray();
            var output = Poisoned(n);
            TaskVectorMerges.Ties(b, Mem(e), w, d, lambda, normalize, rescale, output);

            var trimmed = new double[experts][];
            for (int i = 0; i < experts; i++)
            {
                var kept = ReferenceKept(b, e[i], density);
                var tau = Enumerable.Range(0, n).Select(j => (double)e[i][j] - b[j]).ToArray();
                trimmed[i] = tau.Select((t, j) => kept[j] ? t : 0).ToArray();
                double gain = rescale ? ReferenceL1Gain(tau, trimmed[i]) : 1;
                for (int j = 0; j < n; j++) trimmed[i][j] *= gain;
            }
            var reference = new double[n];
            for (int j = 0; j < n; j++)
                reference[j] = b[j] + lambda * ReferenceDisjoint(trimmed.Select(t => t[j]).ToArray(), w, normalize);
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
        TaskVectorMerges.Ties(b, [e], [1], [0.7f], 1, true, false, output);
        Assert.Equal([0, 0, 0, 4, 5, 6, 7, 8, 9, 10], output);
    }

    [Fact]
    public void Ties_DensityKeepingNoEntry_IsAnErrorNamingTheExpert()
    {
        // ⌊0.1 · 7⌋ = 0: mergekit stops here too ("not gonna zero out the whole tensor").
        var rng = new System.Random(45);
        var (b, e) = RandomModels(rng, 7, 2);
        var ex = Assert.Throws<ArgumentException>(() => TaskVectorMerges.Ties(b, Mem(e), [1, 1], [1f, 0.1f], 1, true, false, Poisoned(7)));
        Assert.Contains("expert 1: density 0.1 keeps no entry of 7", ex.Message);
    }

    [Fact]
    public void Ties_MagnitudesTiedAtTheThreshold_KeepExactlyKLowestIndicesFirst()
    {
        // |τ| = [1, 3, 3, 3, 2, 3]; k = ⌊0.5 · 6⌋ = 3 of the four 3s survive: the first three.
        float[] b = new float[6];
        float[] e = [1, -3, 3, -3, 2, 3];
        var output = Poisoned(6);
        TaskVectorMerges.Ties(b, [e], [1], [0.5f], 1, true, false, output);
        Assert.Equal([0, -3, 3, -3, 0, 0], output);
    }

    [Theory]
    [InlineData(20_000, 0.3)]     // the cut falls inside the second 4096-element chunk
    [InlineData(300_007, 0.5)]    // multi-threaded path
    public void Ties_AllMagnitudesEqual_KeepsTheFirstKEntries(int n, double density)
    {
        var b = new float[n];
        var e = Enumerable.Range(0, n).Select(j => j % 3 == 0 ? -0.25f : 0.25f).ToArray();
        var output = Poisoned(n);
        TaskVectorMerges.Ties(b, [e], [1], [(float)density], 1, true, false, output);
        long k = (long)Math.Floor(density * n);
        for (int j = 0; j < n; j++) Assert.Equal(j < k ? e[j] : 0f, output[j]);
    }

    [Fact]
    public void Ties_WeightedSumExactlyZero_ElectsPlus()
    {
        // τ₁ = +(j + 1), τ₂ = −(j + 1), w = 1, 1: Σ wᵢτᵢ = 0 elects +, so τ₁ alone is averaged in.
        // 37 elements cover the vector path and its scalar tail.
        const int n = 37;
        var b = Enumerable.Range(0, n).Select(j => 0.5f * j).ToArray();
        var e1 = Enumerable.Range(0, n).Select(j => b[j] + (j + 1)).ToArray();
        var e2 = Enumerable.Range(0, n).Select(j => b[j] - (j + 1)).ToArray();
        var output = Poisoned(n);
        TaskVectorMerges.Ties(b, Mem([e1, e2]), [1, 1], [1, 1], 1, true, false, output);
        Assert.Equal(e1, output);

        var dare = Poisoned(n);
        TaskVectorMerges.Dare(b, Mem([e1, e2]), [1, 1], [1, 1], new DareOptions(5, 0, Normalize: true, SignConsensus: true), dare);
        Assert.Equal(e1, dare);
    }

    [Fact]
    public void Ties_NegativeWeight_SignAgreementIsTestedOnTheWeightedDeltas()
    {
        // τ = (1, 1), w = (1, −2): d = wτ = (1, −2), Σd = −1 elects −, and only d₂ = −2 agrees (τ₂ itself is +).
        // Normalized: −2 / −2 = 1; summed: −2.
        float[] b = [10, 10, 10, 10, 10, 10, 10, 10, 10];
        var e = b.Select(x => x + 1).ToArray();
        var mean = Poisoned(b.Length);
        TaskVectorMerges.Ties(b, Mem([e, e]), [1, -2], [1, 1], 1, true, false, mean);
        Assert.All(mean, v => Assert.Equal(11f, v));
        var sum = Poisoned(b.Length);
        TaskVectorMerges.Ties(b, Mem([e, e]), [1, -2], [1, 1], 1, false, false, sum);
        Assert.All(sum, v => Assert.Equal(8f, v));
    }

    [Fact]
    public void Ties_Rescale_RestoresTheTrimmedVectorsL1Norm()
    {
        // τ = [4, −3, 2, 1], k = 2 keeps [4, −3]: Σ|τ| = 10, Σ|τ̂| = 7, gain 10/7.
        float[] b = [1, 1, 1, 1];
        float[] e = [5, -2, 3, 2];
        var output = Poisoned(4);
        TaskVectorMerges.Ties(b, [e], [1], [0.5f], 1, true, true, output);
        Assert.Equal(1 + 40.0 / 7, output[0], 5);
        Assert.Equal(1 - 30.0 / 7, output[1], 5);
        Assert.Equal([1f, 1f], output[2..]);
    }

    [Fact]
    public void ModelScopeTrim_TiesAcrossTensors_KeepExactlyKInTensorOrder()
    {
        // |τ| over the model: tensor 0 = [5, 1, 1, 0], tensor 1 = [1, 1, 2, 0]; k = 4 keeps 5, 2 and the
        // first two 1s in (tensor, element) order, both in tensor 0.
        float[][] b = [new float[4], new float[4]];
        float[][] e = [[5, -1, 1, 0], [1, -1, 2, 0]];
        var trim = ModelScopeTrim.Compute(2, [4L], t => b[t], (_, t) => e[t]);
        Assert.Equal(new TrimCut(1f, 2), trim.Model[0]);
        var merged = new float[2][];
        for (int t = 0; t < 2; t++)
        {
            merged[t] = Poisoned(4);
            TaskVectorMerges.TiesTrimmed(b[t], [e[t]], [1], [trim.PerTensor[0][t]], 1, true, false, merged[t]);
        }
        Assert.Equal([5, -1, 1, 0], merged[0]);
        Assert.Equal([0, 0, 2, 0], merged[1]);
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
        // 2000 entries of exactly |τ| = 0.5, so that a tie crosses the k-th place for some densities.
        for (int j = 0; j < 2000; j++) { bs[2][j] = 0; es[2][j] = j % 2 == 0 ? 0.5f : -0.5f; }

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
        float thr = mags[(int)k - 1];
        Assert.Equal(thr, select.Threshold);
        long above = mags.Count(m => m > thr), ties = mags.Count(m => m == thr);
        Assert.Equal(k - above == ties ? MagnitudeThreshold.AllTies : k - above, select.TiesKept);
    }

    [Theory]
    [InlineData(3, 0.3, MergeRescale.None, false, 61)]
    [InlineData(3, 0.5, MergeRescale.InverseDensity, false, 62)]
    [InlineData(4, 0.7, MergeRescale.InverseDensity, true, 63)]
    [InlineData(2, 1.0, MergeRescale.None, true, 64)]
    [InlineData(3, 0.4, MergeRescale.L1Norm, false, 65)]
    [InlineData(3, 0.6, MergeRescale.L1Norm, true, 66)]
    public void Dare_MatchesFp64Reference(int experts, double density, MergeRescale rescale, bool signConsensus, int seed)
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

            var dropped = new double[experts][];
            for (int i = 0; i < experts; i++)
            {
                var tau = Enumerable.Range(0, n).Select(j => (double)e[i][j] - b[j]).ToArray();
                dropped[i] = tau.Select((t, j) => TaskVectorMerges.DareKeeps(options.Seed, options.TensorIndex, i, j, d[i]) ? t : 0).ToArray();
                double gain = rescale switch
                {
                    MergeRescale.InverseDensity => 1.0 / d[i],
                    MergeRescale.L1Norm => ReferenceL1Gain(tau, dropped[i]),
                    _ => 1,
                };
                for (int j = 0; j < n; j++) dropped[i][j] *= gain;
            }
            var reference = new double[n];
            for (int j = 0; j < n; j++)
            {
                var tau = dropped.Select(t => t[j]).ToArray();
                double merged = signConsensus
                    ? ReferenceDisjoint(tau, w, normalize: true)
                    : Enumerable.Range(0, experts).Sum(i => w[i] * tau[i]);
                reference[j] = b[j] + options.Lambda * merged;
            }
            AssertClose(output, reference);
        }
    }

    [Fact]
    public void Dare_DefaultRescale_PreservesEachTaskVectorsL1NormOverTheTensor()
    {
        // One expert, w = 1, λ = 1, dare_linear: out − b is the dropped τ times Σ|τ| / Σ|τ kept|.
        const int n = 4099;
        var rng = new System.Random(67);
        var (b, e) = RandomModels(rng, n, 1);
        var options = new DareOptions(Seed: 11, TensorIndex: 2);
        Assert.Equal(MergeRescale.L1Norm, options.Rescale);
        var output = Poisoned(n);
        TaskVectorMerges.Dare(b, Mem(e), [1], [0.3f], options, output);

        var tau = Enumerable.Range(0, n).Select(j => (double)e[0][j] - b[j]).ToArray();
        var kept = tau.Select((t, j) => TaskVectorMerges.DareKeeps(11, 2, 0, j, 0.3f) ? t : 0).ToArray();
        double gain = tau.Sum(Math.Abs) / kept.Sum(Math.Abs);
        AssertClose(output, b.Select((x, j) => x + kept[j] * gain).ToArray());
        double l1 = Enumerable.Range(0, n).Sum(j => Math.Abs((double)output[j] - b[j]));
        Assert.Equal(1.0, l1 / tau.Sum(Math.Abs), 5);
        // The paper's 1/density would scale by 3.33 instead, a different vector.
        Assert.NotEqual(1 / 0.3, gain, 2);
    }

    [Fact]
    public void Dare_L1Rescale_NormBelowEpsilon_LeavesTheKeptEntriesUnscaled()
    {
        // Σ|τ| = 4 · 1e-9 < 1e-7: mergekit's guard returns the masked vector as it is.
        float[] b = [0, 0, 0, 0];
        float[] e = [1e-9f, -1e-9f, 1e-9f, 1e-9f];
        var output = Poisoned(4);
        TaskVectorMerges.Dare(b, [e], [1], [0.5f], new DareOptions(3, 0), output);
        for (int j = 0; j < 4; j++)
            Assert.Equal(TaskVectorMerges.DareKeeps(3, 0, 0, j, 0.5f) ? e[j] : 0f, output[j]);
    }

    [Fact]
    public void Dare_InChunks_WithTheWholeTensorsGains_EqualsWholeTensorBitForBit()
    {
        var rng = new System.Random(71);
        var (b, e) = RandomModels(rng, 300_007, 3);
        float[] w = [1, 0.5f, 0.25f], d = [0.3f, 0.5f, 0.9f];
        var options = new DareOptions(Seed: 99, TensorIndex: 4, SignConsensus: true);
        var whole = Poisoned(b.Length);
        TaskVectorMerges.Dare(b, Mem(e), w, d, options, whole);
        var gains = TaskVectorMerges.DareGains(b, Mem(e), d, options);
        var chunked = Poisoned(b.Length);
        for (int off = 0; off < b.Length; off += 10_001)
        {
            int len = Math.Min(10_001, b.Length - off);
            var part = e.Select(x => (ReadOnlyMemory<float>)x.AsMemory(off, len)).ToArray();
            TaskVectorMerges.Dare(b.AsSpan(off, len), part, w, d, options with { FirstElement = off, Gains = gains }, chunked.AsSpan(off, len));
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

    [Fact]
    public void Linear_Normalize_DividesTheWeightedSumOnce()
    {
        // mergekit's order: (w₁θ₁ + w₂θ₂ + w₃θ₃) / (w₁ + w₂ + w₃), each step rounded to float32.
        float[] w = [0.3f, 0.5f, 0.7f];
        float[][] m = [[0.1f, 3f], [0.2f, -7f], [0.7f, 11f]];
        var output = Poisoned(2);
        TaskVectorMerges.Linear(Mem(m), w, true, output);
        float wsum = w[0] + w[1] + w[2];
        for (int j = 0; j < 2; j++)
            Assert.Equal((w[0] * m[0][j] + w[1] * m[1][j] + w[2] * m[2][j]) / wsum, output[j]);
    }

    [Fact]
    public void TaskArithmetic_NormalizeAndLambda_DivideThenScaleThenAddTheBase()
    {
        float[] b = [1.5f, -2f, 0.25f];
        float[][] e = [[2f, -1f, 0.5f], [1f, -3.5f, 0.3f]];
        float[] w = [0.6f, 0.9f];
        var output = Poisoned(3);
        TaskVectorMerges.TaskArithmetic(b, Mem(e), w, 0.7f, true, output);
        float wsum = w[0] + w[1];
        for (int j = 0; j < 3; j++)
            Assert.Equal(b[j] + (w[0] * (e[0][j] - b[j]) + w[1] * (e[1][j] - b[j])) / wsum * 0.7f, output[j]);
    }
}
