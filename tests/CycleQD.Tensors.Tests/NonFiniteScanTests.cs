using System.Runtime.InteropServices;
using CycleQD.Testing;

namespace CycleQD.Tensors.Tests;

public class NonFiniteScanTests
{
    /// <summary>Scalar reference: decode every element to float64 and classify it.</summary>
    private static NonFiniteCount Reference(float[] values)
    {
        long nan = 0, inf = 0, first = -1;
        for (int i = 0; i < values.Length; i++)
        {
            if (float.IsFinite(values[i])) continue;
            if (first < 0) first = i;
            if (float.IsNaN(values[i])) nan++; else inf++;
        }
        return new NonFiniteCount(nan, inf, first);
    }

    private static float[] Random(int n, int seed)
    {
        var r = new System.Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(r.NextDouble() * 2 - 1) * 1e4f;
        return v;
    }

    private static byte[] Encode(float[] values, DType dtype)
    {
        var bytes = new byte[values.Length * DTypes.SizeOf(dtype)];
        DTypeConversion.FromSingle(values, dtype, bytes);
        return bytes;
    }

    public static TheoryData<string, int> DTypesAndLengths()
    {
        var data = new TheoryData<string, int>();
        foreach (var d in new[] { "F32", "F16", "BF16" })
            foreach (int n in new[] { 0, 1, 7, 31, 64, 257, 1000 })
                data.Add(d, n);
        return data;
    }

    [Theory]
    [MemberData(nameof(DTypesAndLengths))]
    public void Count_PoisonedAtEveryPosition_MatchesScalarReference(string dtypeName, int n)
    {
        Assert.True(DTypes.TryParse(dtypeName, out var dtype));
        var clean = Random(n, n);
        Assert.Equal(NonFiniteCount.None, NonFiniteScan.Count(Encode(clean, dtype), dtype));
        // One bad value at each position (the vector body and the scalar tail), of each kind.
        float[] kinds = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, -float.NaN];
        for (int pos = 0; pos < n; pos += Math.Max(1, n / 37))
            foreach (float bad in kinds)
            {
                var v = (float[])clean.Clone();
                v[pos] = bad;
                if (pos + 3 < n) v[pos + 3] = float.NaN;
                var bytes = Encode(v, dtype);
                var decoded = new float[n];
                DTypeConversion.ToSingle(bytes, dtype, decoded);
                var got = NonFiniteScan.Count(bytes, dtype);
                Assert.Equal(Reference(decoded), got);
                Assert.Equal(pos, got.FirstIndex);
                Assert.False(got.IsFinite);
            }
    }

    [Fact]
    public void Count_LargestFiniteAndSubnormals_AreFinite()
    {
        float[] v = [float.MaxValue, -float.MaxValue, float.Epsilon, -0f, 0f];
        Assert.True(NonFiniteScan.Count(v).IsFinite);
        // float16: ±65504 is the largest finite value, 2^-24 the smallest subnormal.
        float[] h = [65504f, -65504f, 5.96e-8f, -0f];
        Assert.True(NonFiniteScan.Count(Encode(h, DType.F16), DType.F16).IsFinite);
        Assert.False(NonFiniteScan.Count(Encode([65536f], DType.F16), DType.F16).IsFinite);
        // bfloat16's largest finite value is 0x7F7F; 0x7F80 is +∞ and 0x7FC1 a NaN.
        ushort[] bf = [0x7F7F, 0xFF7F, 0x0001, 0x7F80, 0xFFC1];
        var c = NonFiniteScan.Count(MemoryMarshal.AsBytes(bf.AsSpan()), DType.BF16);
        Assert.Equal(new NonFiniteCount(1, 1, 3), c);
    }

    [Fact]
    public void Count_F64AndIntegerTypes_ClassifiedByTheirOwnBits()
    {
        double[] d = [1, double.NaN, double.NegativeInfinity, double.MaxValue];
        Assert.Equal(new NonFiniteCount(1, 1, 1), NonFiniteScan.Count(MemoryMarshal.AsBytes(d.AsSpan()), DType.F64));
        // The same bytes as integers are just numbers.
        Assert.Equal(NonFiniteCount.None, NonFiniteScan.Count(MemoryMarshal.AsBytes(d.AsSpan()), DType.I64));
    }

    [Fact]
    public void Count_LengthNotAWholeNumberOfElements_Throws()
    {
        Assert.Throws<ArgumentException>(() => NonFiniteScan.Count(new byte[6], DType.F32));
    }

    [Fact]
    public void Count_SeveralParallelChunks_CountsAndFirstIndexAcrossChunks()
    {
        // Three chunks and a partial fourth: bad values in the second and last only.
        int perChunk = NonFiniteScan.ChunkBytes / sizeof(float);
        var v = new float[perChunk * 3 + 1001];
        v[perChunk + 5] = float.PositiveInfinity;
        v[perChunk + 6] = float.NaN;
        v[^1] = float.NaN;
        var c = NonFiniteScan.Count(v);
        Assert.Equal(new NonFiniteCount(2, 1, perChunk + 5), c);
    }

    [Fact]
    public void CountNonFinite_MappedFileWithUnalignedData_NamesTheCountsPerTensor()
    {
        using var dir = new TempDir();
        string path = dir.File("m.safetensors");
        // A 2-byte tensor first puts the F32 tensor's data at an odd multiple of 2, not of 4.
        SafetensorsWriter.WriteFile(path,
        [
            TensorData.FromSingle("a", DType.BF16, [1], new float[] { 1 }),
            TensorData.FromSingle("b", DType.F32, [2, 3], new float[] { 1, float.NaN, 2, float.NegativeInfinity, float.NaN, 3 }),
            TensorData.FromSingle("c", DType.F16, [4], new float[] { 1, 2, 3, 4 }),
        ]);
        using var m = SafetensorsModel.Open(path);
        Assert.Equal(NonFiniteCount.None, m.CountNonFinite("a"));
        Assert.Equal(new NonFiniteCount(2, 1, 1), m.CountNonFinite("b"));
        Assert.Equal(NonFiniteCount.None, m.CountNonFinite("c"));
        var e = Assert.Throws<TensorFormatException>(m.ThrowIfNonFinite);
        Assert.Equal(path, e.FilePath);
        Assert.Equal("b", e.TensorName);
        Assert.Contains("2 NaN and 1 infinite value(s), the first at element 1", e.Message);
    }

    [Fact]
    public void ThrowIfNonFinite_FiniteShardedModel_Passes()
    {
        using var dir = new TempDir();
        var tensors = Enumerable.Range(0, 4).Select(i => TensorData.FromSingle($"t{i}", DType.BF16, [100], Random(100, i))).ToArray();
        SafetensorsWriter.WriteModel(dir.Path, tensors, maxShardBytes: 250);
        using var m = SafetensorsModel.Open(dir.Path);
        Assert.True(m.Files.Count > 1);
        m.ThrowIfNonFinite();
    }
}
