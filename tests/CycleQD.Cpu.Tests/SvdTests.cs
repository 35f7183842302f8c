using CycleQD.Core.Compute;
using CycleQD.Core.Random;
using CycleQD.Cpu.Linalg;
using CycleQD.Tensors;

namespace CycleQD.Cpu.Tests;

public class SvdTests
{
    public SvdTests() => CpuWeightSet.PoisonNewAllocations = true;

    private static float[] RandomMatrix(System.Random rng, int m, int n) =>
        Enumerable.Range(0, m * n).Select(_ => (float)Numerics.Gaussian(rng)).ToArray();

    /// <summary>A = U diag(s) Vᵀ with s_i = decay^i, built in float64.</summary>
    private static (double[] A, double[] U, double[] S, double[] V) Decaying(System.Random rng, int m, int n, double decay)
    {
        int r = Math.Min(m, n);
        var u = Numerics.Orthonormal(rng, m, r);
        var v = Numerics.Orthonormal(rng, n, r);
        var s = Enumerable.Range(0, r).Select(i => Math.Pow(decay, i)).ToArray();
        return (Numerics.Compose(u, s, v, m, n, r), u, s, v);
    }

    [Theory]
    [InlineData(40, 25, 1)]
    [InlineData(25, 40, 2)]
    [InlineData(128, 128, 3)]
    [InlineData(1, 9, 4)]
    public void Full_RandomMatrix_ReconstructsWithin1e5(int m, int n, int seed)
    {
        var a = RandomMatrix(new System.Random(seed), m, n);
        var svd = Svd.Full(a, m, n, 0);
        int r = Math.Min(m, n);
        Assert.Equal(r, svd.K);
        var rec = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double acc = 0;
                for (int c = 0; c < r; c++) acc += (double)svd.U[i * svd.LdU + c] * svd.S[c] * svd.Vt[c * n + j];
                rec[i * n + j] = acc;
            }
        double err = Numerics.RelativeError(rec.Select(x => (float)x).ToArray(), a.Select(x => (double)x).ToArray());
        Assert.True(err < 1e-5, $"relative reconstruction error {err}");
        for (int c = 1; c < r; c++) Assert.True(svd.S[c - 1] >= svd.S[c]);
    }

    [Theory]
    [InlineData(256, 128, 16, 0.8, 7)]
    [InlineData(200, 300, 8, 0.7, 8)]
    [InlineData(384, 256, 32, 0.9, 9)]
    public void Randomized_DecayingSpectrum_TopKWithin1e3OfLapack(int m, int n, int k, double decay, int seed)
    {
        var (a, _, _, _) = Decaying(new System.Random(seed), m, n, decay);
        var af = a.Select(x => (float)x).ToArray();
        var full = Svd.Full(af, m, n, k);
        var rnd = Svd.Randomized(af, m, n, k, oversampling: 10, powerIterations: 2, seed: 99, stream: 3, generation: 4);
        Assert.Equal(k, rnd.K);
        for (int j = 0; j < k; j++)
        {
            double rel = Math.Abs(rnd.S[j] - full.S[j]) / full.S[j];
            Assert.True(rel < 1e-3, $"σ_{j}: randomized {rnd.S[j]} vs LAPACK {full.S[j]} (rel {rel})");
        }
    }

    [Theory]
    [InlineData(48, 32, 0, SvdMethod.Full, 1e-5)]
    [InlineData(32, 48, 0, SvdMethod.Full, 1e-5)]
    [InlineData(96, 64, 8, SvdMethod.Randomized, 1e-4)]
    [InlineData(96, 64, 8, SvdMethod.Full, 1e-5)]
    public void MutateSvd_KnownFactors_MatchesFp64Reference(int m, int n, int k, SvdMethod method, double tolerance)
    {
        var rng = new System.Random(m * 1000 + n + k);
        int r = Math.Min(m, n);
        var u = Numerics.Orthonormal(rng, m, r);
        var v = Numerics.Orthonormal(rng, n, r);
        // Distinct, decaying singular values so components are well separated.
        var s = Enumerable.Range(0, r).Select(i => 2.0 * Math.Pow(0.85, i)).ToArray();
        var tau = Numerics.Compose(u, s, v, m, n, r);
        var baseVals = Enumerable.Range(0, m * n).Select(_ => (float)Numerics.Gaussian(rng)).ToArray();
        var childVals = baseVals.Select((b, i) => (float)(b + tau[i])).ToArray();
        var bias = new float[n];
        var src = (float[] w) => new InMemoryTensorSource()
            .Add("layers.0.weight", DType.F32, [m, n], w)
            .Add("layers.0.bias", DType.F32, [n], bias)
            .Add("embed_tokens.weight", DType.F32, [m, n], w);
        using var be = new CpuComputeBackend();
        using var b = be.Upload(src(baseVals));
        using var c = be.Upload(src(childVals));
        const ulong seed = 1234;
        const uint generation = 17;
        var options = new MutationOptions(MutationKind.Svd, SvdScaleMax: 0.3, SvdRank: k, SvdMethod: method);
        be.MutateSvd(c, b, options, seed, generation);

        // Exact τ as stored (child − base in float32 arithmetic is what the backend sees).
        var storedTau = childVals.Select((x, i) => (double)x - baseVals[i]).ToArray();
        int kk = k == 0 ? r : k;
        var expected = new double[m * n];
        var scaled = new double[r];
        for (int j = 0; j < kk; j++) scaled[j] = s[j] * 0.3 * Philox4x32.Uniform(seed, 0, generation, Streams.SvdScale, (ulong)j);
        var delta = Numerics.Compose(u, scaled, v, m, n, r);
        for (int i = 0; i < expected.Length; i++) expected[i] = storedTau[i] + delta[i];
        var got = MergeTests.Read(be, c, 0).Select((x, i) => x - baseVals[i]).ToArray();
        double err = Numerics.RelativeError(got, expected);
        Assert.True(err < tolerance, $"relative error {err}");
        // And the perturbation itself, not only the sum, is right.
        double deltaErr = Numerics.RelativeError(got.Select((x, i) => (float)(x - storedTau[i])).ToArray(), delta);
        Assert.True(deltaErr < 100 * tolerance, $"relative error of the added components {deltaErr}");
        Assert.Equal(bias, MergeTests.Read(be, c, 1));
        Assert.Equal(childVals, MergeTests.Read(be, c, 2));
    }

    /// <summary>
    /// θ' = store(θ + σ·z) with σ·z rounded to float32 before the addition (never fused), per element and
    /// storage type: the CUDA backend's kernel follows this formula and is compared with it bit for bit.
    /// Several chunks (ChunkElements) with odd lengths, so the chunked noise fill must line up with the element index.
    /// </summary>
    [Theory]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    [InlineData(DType.F32)]
    public void MutateGaussian_EqualsUnfusedFormula_ForEveryStorageType(DType dtype)
    {
        var rng = new System.Random(3);
        int big = CpuComputeBackend.ChunkElements * 2 + 77;
        var vals = Enumerable.Range(0, big).Select(_ => (float)Numerics.Gaussian(rng)).ToArray();
        var src = new InMemoryTensorSource()
            .Add("model.embed_tokens.weight", dtype, [5, 7], vals.AsSpan(0, 35).ToArray())
            .Add("w", dtype, [big], vals)
            .Add("b", dtype, [13], vals.AsSpan(0, 13).ToArray());
        using var be = new CpuComputeBackend();
        using var c = be.Upload(src);
        var before = Enumerable.Range(0, 3).Select(t => MergeTests.Read(be, c, t)).ToArray();
        const float Sigma = 0.01f;
        be.MutateGaussian(c, new MutationOptions(MutationKind.Gaussian, GaussianStd: Sigma), 77, 5);
        Assert.Equal(before[0], MergeTests.Read(be, c, 0)); // embeddings are not mutated by default
        for (int t = 1; t < 3; t++)
        {
            var got = MergeTests.Read(be, c, t);
            int changed = 0;
            for (int e = 0; e < got.Length; e++)
            {
                float scaled = Philox4x32.Normal(77, (uint)t, 5, Streams.GaussianNoise, (ulong)e) * Sigma;
                float sum = scaled + before[t][e];
                float expected = dtype switch
                {
                    DType.BF16 => DTypeConversion.BF16ToSingle(DTypeConversion.SingleToBF16(sum)),
                    DType.F16 => (float)(Half)sum,
                    _ => sum,
                };
                Assert.True(BitConverter.SingleToInt32Bits(got[e]) == BitConverter.SingleToInt32Bits(expected), $"tensor {t} element {e}: {got[e]} vs {expected}");
                if (got[e] != before[t][e]) changed++;
            }
            Assert.True(changed > got.Length / 2, $"tensor {t}: only {changed} of {got.Length} elements changed");
        }
    }
}
