using CycleQD.Core.Compute;
using CycleQD.Core.Random;
using CycleQD.Cpu.Linalg;
using CycleQD.Tensors;

namespace CycleQD.Cpu.Tests;

public class ExpertBasisMutationTests
{
    public ExpertBasisMutationTests() => CpuWeightSet.PoisonNewAllocations = true;

    private static float[] Random(System.Random rng, long count) =>
        Enumerable.Range(0, checked((int)count)).Select(_ => (float)Numerics.Gaussian(rng)).ToArray();

    /// <summary>A weight matrix, a 2-D tensor whose name says norm, a 1-D bias and an embedding, all rows×cols where 2-D.</summary>
    private static InMemoryTensorSource Model(DType dtype, int rows, int cols, Func<long, float[]> values)
    {
        var src = new InMemoryTensorSource();
        foreach (var (name, shape) in new (string, long[])[]
                 {
                     ("model.layers.0.mlp.up_proj.weight", [rows, cols]), ("model.layers.0.post_norm.weight", [rows, cols]),
                     ("model.layers.0.mlp.up_proj.bias", [rows]), ("model.embed_tokens.weight", [rows, cols]),
                 })
        {
            long count = shape.Aggregate(1L, (a, b) => a * b);
            var bytes = new byte[count * DTypes.SizeOf(dtype)];
            DTypeConversion.FromSingle(values(count), dtype, bytes);
            src.Add(new TensorSpec(name, dtype, shape), bytes);
        }
        return src;
    }

    [Theory]
    [InlineData(DType.F32, 37, 21, 21, 1e-6)]
    [InlineData(DType.F32, 24, 40, 5, 1e-6)]
    [InlineData(DType.BF16, 64, 48, 48, 1e-2)]
    public void MutateExpertBasis_FreshRandomFactors_MatchesFp64Reference(DType dtype, int rows, int cols, int rank, double tolerance)
    {
        var rng = new System.Random(rows * 7919 + cols * 31 + rank);
        using var be = new CpuComputeBackend();
        using var b = be.Upload(Model(dtype, rows, cols, n => Random(rng, n)));
        using var parent = be.Upload(Model(dtype, rows, cols, n => Random(rng, n)));
        // The child is written over a poisoned allocation, so any element the pipeline skips stays NaN.
        using var child = be.Merge(b, [parent], [1f]);
        var before = Enumerable.Range(0, 4).Select(i => MergeTests.Read(be, child, i)).ToArray();
        var factors = new SvdFactors(rows, cols, rank, Random(rng, (long)rows * rank),
            Enumerable.Range(0, rank).Select(j => (float)(1 + rng.NextDouble())).ToArray(), Random(rng, (long)rank * cols));
        var basis = new ExpertSvdBasis("t", b.Tensors, [factors, factors, null, factors]);
        var options = new MutationOptions(SvdScaleMax: 0.3, Basis: MutationBasis.Expert);
        const ulong seed = 99;
        const uint generation = 5;

        be.MutateSvdExpertBasis(child, b, basis, options, seed, generation);

        var r = Enumerable.Range(0, rank).Select(j => 0.3 * Philox4x32.Uniform(seed, 0, generation, Streams.SvdScale, (ulong)j)).ToArray();
        var expected = new double[rows * cols];
        for (int i = 0; i < rows; i++)
            for (int c = 0; c < cols; c++)
            {
                double acc = before[0][i * cols + c];
                for (int j = 0; j < rank; j++) acc += (double)factors.U[i * rank + j] * r[j] * factors.S[j] * factors.Vt[j * cols + c];
                expected[i * cols + c] = acc;
            }
        var got = MergeTests.Read(be, child, 0);
        double err = Numerics.RelativeError(got, expected);
        Assert.True(err < tolerance, $"‖out − ref‖/‖ref‖ = {err}");
        // The update itself, not only the sum: the child moved by more than its storage rounding.
        double moved = Numerics.RelativeError(before[0], expected);
        Assert.True(moved > 10 * tolerance, $"the mutation changed the child by only {moved}");
        // The reference skips names containing "norm"; 1-D tensors have no SVD; embeddings are off by default.
        Assert.Equal(before[1], MergeTests.Read(be, child, 1));
        Assert.Equal(before[2], MergeTests.Read(be, child, 2));
        Assert.Equal(before[3], MergeTests.Read(be, child, 3));
    }

    [Fact]
    public void MutateExpertBasis_IncludeEmbeddings_MutatesTheEmbeddingWithItsOwnStream()
    {
        var rng = new System.Random(3);
        using var be = new CpuComputeBackend();
        using var b = be.Upload(Model(DType.F32, 8, 6, n => Random(rng, n)));
        using var child = be.Upload(Model(DType.F32, 8, 6, n => Random(rng, n)));
        var f = new SvdFactors(8, 6, 6, Random(rng, 48), Enumerable.Repeat(1f, 6).ToArray(), Random(rng, 36));
        var basis = new ExpertSvdBasis("t", b.Tensors, [f, null, null, f]);
        var before = MergeTests.Read(be, child, 3);
        be.MutateSvdExpertBasis(child, b, basis, new MutationOptions(Basis: MutationBasis.Expert, IncludeEmbeddings: true), 1, 2);
        var after = MergeTests.Read(be, child, 3);
        double Element00(uint stream)
        {
            double acc = before[0];
            for (int j = 0; j < 6; j++) acc += (double)f.U[j] * 0.3 * Philox4x32.Uniform(1, stream, 2, Streams.SvdScale, (ulong)j) * f.S[j] * f.Vt[j * 6];
            return acc;
        }
        // Stream = tensor index 3: the embedding draws its own r, not tensor 0's.
        Assert.Equal(Element00(3), after[0], 4);
        Assert.NotEqual(Math.Round(Element00(0), 4), Math.Round((double)after[0], 4));
    }

    [Fact]
    public void MutateExpertBasis_MissingFactors_NamesTheTensor()
    {
        using var be = new CpuComputeBackend();
        var rng = new System.Random(4);
        using var b = be.Upload(Model(DType.F32, 4, 3, n => Random(rng, n)));
        using var child = be.Upload(Model(DType.F32, 4, 3, n => Random(rng, n)));
        var basis = new ExpertSvdBasis("tinyskills/db", b.Tensors, [null, null, null, null]);
        var e = Assert.Throws<ArgumentException>(() => be.MutateSvdExpertBasis(child, b, basis, new MutationOptions(Basis: MutationBasis.Expert), 1, 0));
        Assert.Contains("model.layers.0.mlp.up_proj.weight", e.Message);
        Assert.Contains("tinyskills/db", e.Message);
    }

    [Theory]
    [InlineData(0, 1e-5)]
    [InlineData(3, 0)]
    public void Factorization_ExpertTaskVector_ReconstructsTauAndSkipsNorms(int svdRank, double tolerance)
    {
        const int rows = 20, cols = 12;
        var rng = new System.Random(11 + svdRank);
        using var be = new CpuComputeBackend();
        using var b = be.Upload(Model(DType.F32, rows, cols, n => Random(rng, n)));
        using var expert = be.Upload(Model(DType.F32, rows, cols, n => Random(rng, n)));
        var options = new MutationOptions(SvdRank: svdRank, Basis: MutationBasis.Expert);

        var basis = ExpertSvdFactorization.Compute("t", be, expert, b, options);

        Assert.Null(basis[1]);
        Assert.Null(basis[2]);
        Assert.Null(basis[3]);
        var f = basis[0]!;
        int k = svdRank == 0 ? cols : svdRank;
        Assert.Equal(k, f.Rank);
        var tau = MergeTests.Read(be, expert, 0).Zip(MergeTests.Read(be, b, 0), (x, y) => (double)x - y).ToArray();
        var recon = new float[rows * cols];
        for (int i = 0; i < rows; i++)
            for (int c = 0; c < cols; c++)
            {
                double acc = 0;
                for (int j = 0; j < k; j++) acc += (double)f.U[i * k + j] * f.S[j] * f.Vt[j * cols + c];
                recon[i * cols + c] = (float)acc;
            }
        if (svdRank == 0)
        {
            double err = Numerics.RelativeError(recon, tau);
            Assert.True(err < tolerance, $"U S Vᵀ vs τ: {err}");
        }
        else
        {
            // Truncated: the top-k singular values, descending, and a residual that is not zero.
            Assert.True(f.S.Zip(f.S.Skip(1)).All(p => p.First >= p.Second));
            Assert.True(Numerics.RelativeError(recon, tau) > 0.1);
        }
    }
}
