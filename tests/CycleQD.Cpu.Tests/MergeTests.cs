using CycleQD.Core.Compute;
using CycleQD.Tensors;

namespace CycleQD.Cpu.Tests;

public class MergeTests
{
    public MergeTests() => CpuWeightSet.PoisonNewAllocations = true;

    internal static (InMemoryTensorSource Source, double[][] Values) RandomModel(System.Random rng, DType dtype, long[][] shapes, double offset)
    {
        var src = new InMemoryTensorSource();
        var vals = new double[shapes.Length][];
        for (int t = 0; t < shapes.Length; t++)
        {
            long n = shapes[t].Aggregate(1L, (a, b) => a * b);
            var f = new float[n];
            for (long i = 0; i < n; i++) f[i] = (float)(offset + rng.NextDouble() * 2 - 1);
            var bytes = new byte[n * DTypes.SizeOf(dtype)];
            DTypeConversion.FromSingle(f, dtype, bytes);
            DTypeConversion.ToSingle(bytes, dtype, f); // the exact stored values
            vals[t] = f.Select(x => (double)x).ToArray();
            src.Add(new TensorSpec($"t{t}", dtype, shapes[t]), bytes);
        }
        return (src, vals);
    }

    internal static float[] Read(CpuComputeBackend be, IWeightSet set, int index)
    {
        var spec = set.Tensors[index];
        var bytes = new byte[spec.ByteLength];
        be.Download(set, index, bytes);
        var f = new float[spec.ElementCount];
        DTypeConversion.ToSingle(bytes, spec.DType, f);
        return f;
    }

    private static readonly long[][] Shapes = [[0], [1], [7], [33, 5], [CpuComputeBackend.ChunkElements + 13], [3, CpuComputeBackend.ChunkElements + 1]];

    [Theory]
    [InlineData(2, 11)]
    [InlineData(3, 12)]
    [InlineData(8, 13)]
    public void Merge_Fp32_MatchesFp64Reference(int parents, int seed)
    {
        var rng = new System.Random(seed);
        using var be = new CpuComputeBackend();
        var (bs, bv) = RandomModel(rng, DType.F32, Shapes, 0);
        var ps = Enumerable.Range(0, parents).Select(_ => RandomModel(rng, DType.F32, Shapes, 0.1)).ToArray();
        var w = Enumerable.Range(0, parents).Select(_ => (float)(1 + 0.03 * (rng.NextDouble() * 2 - 1))).ToArray();
        using var b = be.Upload(bs);
        var sets = ps.Select(p => be.Upload(p.Source)).ToArray();
        using var child = be.Merge(b, sets, w);
        double wsum = w.Sum(x => (double)x);
        for (int t = 0; t < Shapes.Length; t++)
        {
            var got = Read(be, child, t);
            var reference = new double[got.Length];
            for (int e = 0; e < got.Length; e++)
            {
                double acc = bv[t][e];
                for (int p = 0; p < parents; p++) acc += w[p] * (ps[p].Values[t][e] - bv[t][e]) / wsum;
                reference[e] = acc;
            }
            Assert.True(Numerics.RelativeError(got, reference) < 1e-6, $"tensor {t}: rel. error {Numerics.RelativeError(got, reference)}");
        }
        foreach (var s in sets) s.Dispose();
    }

    [Theory]
    [InlineData(DType.BF16, 21)]
    [InlineData(DType.F16, 22)]
    public void Merge_HalfStorage_WithinOneRoundingOfFp64Reference(DType dtype, int seed)
    {
        var rng = new System.Random(seed);
        using var be = new CpuComputeBackend();
        var (bs, bv) = RandomModel(rng, dtype, Shapes, 0);
        var p1 = RandomModel(rng, dtype, Shapes, 0.2);
        var p2 = RandomModel(rng, dtype, Shapes, -0.1);
        float[] w = [1.02f, 0.97f];
        using var b = be.Upload(bs);
        using var a1 = be.Upload(p1.Source);
        using var a2 = be.Upload(p2.Source);
        using var child = be.Merge(b, [a1, a2], w);
        // One rounding to the storage type: half a unit in the last place, at most 2^-8 of |r| for bf16
        // (8 significant bits) and 2^-11 for f16, plus float32 arithmetic, bounded by 2^-20.
        double ulp = dtype == DType.BF16 ? Math.Pow(2, -8) : Math.Pow(2, -11);
        for (int t = 0; t < Shapes.Length; t++)
        {
            var got = Read(be, child, t);
            for (int e = 0; e < got.Length; e++)
            {
                double r = bv[t][e] + (w[0] * (p1.Values[t][e] - bv[t][e]) + w[1] * (p2.Values[t][e] - bv[t][e])) / ((double)w[0] + w[1]);
                double tol = Math.Abs(r) * ulp + Math.Pow(2, -20) + (dtype == DType.F16 ? Math.Pow(2, -25) : 0);
                Assert.True(Math.Abs(got[e] - r) <= tol, $"tensor {t}[{e}]: {got[e]} vs {r}");
            }
        }
    }

    [Fact]
    public void TaskVector_MixedStorage_IsFp32Difference()
    {
        var rng = new System.Random(5);
        using var be = new CpuComputeBackend();
        var (bs, bv) = RandomModel(rng, DType.BF16, Shapes, 0);
        var (ms, mv) = RandomModel(rng, DType.BF16, Shapes, 0.3);
        using var b = be.Upload(bs);
        using var m = be.Upload(ms);
        using var tv = be.TaskVector(m, b);
        for (int t = 0; t < Shapes.Length; t++)
        {
            Assert.Equal(DType.F32, tv.Tensors[t].DType);
            var got = Read(be, tv, t);
            var reference = mv[t].Zip(bv[t], (x, y) => x - y).ToArray();
            Assert.True(Numerics.RelativeError(got, reference) < 1e-7);
        }
    }

    [Fact]
    public void Merge_MismatchedShapes_ThrowsNamingTensor()
    {
        using var be = new CpuComputeBackend();
        using var b = be.Upload(new InMemoryTensorSource().Add("w", DType.F32, [2, 2], new float[4]));
        using var p = be.Upload(new InMemoryTensorSource().Add("w", DType.F32, [4, 1], new float[4]));
        var e = Assert.Throws<ArgumentException>(() => be.Merge(b, [p], [1f]));
        Assert.Contains("'w' [4, 1]", e.Message);
    }
}

public class MixedStorageMergeTests
{
    public MixedStorageMergeTests() => CpuWeightSet.PoisonNewAllocations = true;

    [Fact]
    public void Merge_Bf16BaseWithFp32AndF16Parents_WithinOneBf16RoundingOfFp64Reference()
    {
        var rng = new System.Random(41);
        long[][] shapes = [[5], [CpuComputeBackend.ChunkElements + 3]];
        using var be = new CpuComputeBackend();
        var (bs, bv) = MergeTests.RandomModel(rng, DType.BF16, shapes, 0);
        var p1 = MergeTests.RandomModel(rng, DType.F32, shapes, 0.2);
        var p2 = MergeTests.RandomModel(rng, DType.F16, shapes, -0.1);
        using var b = be.Upload(bs);
        using var a1 = be.Upload(p1.Source);
        using var a2 = be.Upload(p2.Source);
        using var child = be.Merge(b, [a1, a2], [0.9f, 1.1f]);
        for (int t = 0; t < shapes.Length; t++)
        {
            Assert.Equal(DType.BF16, child.Tensors[t].DType);
            var got = MergeTests.Read(be, child, t);
            for (int e = 0; e < got.Length; e++)
            {
                double r = bv[t][e] + (0.9 * (p1.Values[t][e] - bv[t][e]) + 1.1 * (p2.Values[t][e] - bv[t][e])) / 2.0;
                Assert.True(Math.Abs(got[e] - r) <= Math.Abs(r) * Math.Pow(2, -8) + 1e-6, $"tensor {t}[{e}]: {got[e]} vs {r}");
            }
        }
    }

    [Fact]
    public void MergeInto_ReusedChild_OverwritesEverything()
    {
        var rng = new System.Random(42);
        long[][] shapes = [[CpuComputeBackend.ChunkElements * 2 + 7]];
        using var be = new CpuComputeBackend();
        var (bs, _) = MergeTests.RandomModel(rng, DType.BF16, shapes, 0);
        var (ps, _) = MergeTests.RandomModel(rng, DType.BF16, shapes, 0.3);
        using var b = be.Upload(bs);
        using var p = be.Upload(ps);
        using var fresh = be.Merge(b, [p, b], [1f, 1f]);
        using var reused = be.Merge(p, [p], [1f]);
        be.MergeInto(reused, b, [p, b], [1f, 1f]);
        Assert.Equal(MergeTests.Read(be, fresh, 0), MergeTests.Read(be, reused, 0));
    }
}
