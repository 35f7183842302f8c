using System.Runtime.InteropServices;
using CycleQD.Testing;
using CycleQD.Tensors;

namespace CycleQD.Tensors.Tests;

public class SafetensorsRoundTripTests
{
    private static float[] RandomValues(Random rng, int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void WriteThenRead_WeightTypes_BytesAndValuesRoundTrip(DType dtype)
    {
        using var dir = new TempDir();
        var rng = new Random(42);
        var a = RandomValues(rng, 3 * 5);
        var b = RandomValues(rng, 7);
        string path = dir.File("x.safetensors");
        SafetensorsWriter.WriteFile(path,
        [
            TensorData.FromSingle("a", dtype, [3, 5], a),
            TensorData.FromSingle("b", dtype, [7], b),
            TensorData.FromBytes("empty", dtype, [0, 4], ReadOnlyMemory<byte>.Empty),
        ], new Dictionary<string, string> { ["format"] = "pt", ["note"] = "round trip" });

        using var f = SafetensorsFile.Open(path);
        Assert.Equal(["a", "b", "empty"], f.Tensors.Select(t => t.Name));
        Assert.Equal("round trip", f.Metadata["note"]);
        Assert.Equal([3L, 5L], f.GetInfo("a").Shape);
        Assert.Equal(dtype, f.GetInfo("a").DType);

        // What the writer encodes is exactly what a reader decodes.
        var expectedBytes = new byte[a.Length * DTypes.SizeOf(dtype)];
        DTypeConversion.FromSingle(a, dtype, expectedBytes);
        Assert.True(f.GetBytes("a").SequenceEqual(expectedBytes));
        var back = f.ReadSingle("b");
        var expectedB = new float[b.Length];
        var bBytes = new byte[b.Length * DTypes.SizeOf(dtype)];
        DTypeConversion.FromSingle(b, dtype, bBytes);
        DTypeConversion.ToSingle(bBytes, dtype, expectedB);
        Assert.Equal(expectedB, back);
        Assert.Equal(0, f.GetBytes("empty").Length);
    }

    [Fact]
    public void Write_HeaderPaddedTo8Bytes_AndDataContiguous()
    {
        using var dir = new TempDir();
        string path = dir.File("x.safetensors");
        SafetensorsWriter.WriteFile(path, [TensorData.FromSingle("w", DType.F32, [3], new float[] { 1, 2, 3 })]);
        byte[] raw = File.ReadAllBytes(path);
        ulong n = BitConverter.ToUInt64(raw, 0);
        Assert.Equal(0UL, (8 + n) % 8);
        Assert.Equal(raw.Length, (int)(8 + n + 12));
        Assert.Equal(new float[] { 1, 2, 3 }, MemoryMarshal.Cast<byte, float>(raw.AsSpan((int)(8 + n))).ToArray());
    }

    [Fact]
    public void Write_OtherDTypes_RawBytesRoundTrip()
    {
        using var dir = new TempDir();
        string path = dir.File("ints.safetensors");
        var ids = new long[] { 1, -2, 3 };
        SafetensorsWriter.WriteFile(path, [TensorData.FromBytes("ids", DType.I64, [3], MemoryMarshal.AsBytes(ids.AsSpan()).ToArray())]);
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(ids, f.GetSpan<long>("ids").ToArray());
        var e = Assert.Throws<TensorFormatException>(() => f.ReadSingle("ids"));
        Assert.Contains("'ids'", e.Message);
    }

    [Fact]
    public void WriteModel_Sharded_IndexListsEveryTensor_AndReaderJoinsShards()
    {
        using var dir = new TempDir();
        var rng = new Random(3);
        var tensors = Enumerable.Range(0, 10)
            .Select(i => TensorData.FromSingle($"layer.{i}.weight", i % 2 == 0 ? DType.BF16 : DType.F32, [16, 8], RandomValues(rng, 128)))
            .ToList();
        var files = SafetensorsWriter.WriteModel(dir.Path, tensors, maxShardBytes: 1200);
        Assert.True(files.Count > 2);
        Assert.EndsWith(SafetensorsWriter.IndexFileName, files[^1]);
        Assert.False(File.Exists(dir.File(SafetensorsWriter.SingleFileName)));

        using var m = SafetensorsModel.Open(dir.Path);
        Assert.Equal(files.Count - 1, m.Files.Count);
        Assert.Equal(tensors.Select(t => t.Name), m.Tensors.Select(t => t.Name));
        foreach (var t in tensors)
        {
            using var one = new MemoryStream();
            t.WriteTo(one);
            Assert.True(m.GetBytes(t.Name).SequenceEqual(one.ToArray()), t.Name);
        }
        Assert.Empty(Directory.GetFiles(dir.Path, ".*tmp*"));
    }

    [Fact]
    public void WriteModel_RewriteWithFewerShards_RemovesStaleShards()
    {
        using var dir = new TempDir();
        var tensors = Enumerable.Range(0, 4).Select(i => TensorData.FromSingle($"t{i}", DType.F32, [100], new float[100])).ToList();
        SafetensorsWriter.WriteModel(dir.Path, tensors, maxShardBytes: 400);
        Assert.Equal(4, Directory.GetFiles(dir.Path, "model-*.safetensors").Length);
        SafetensorsWriter.WriteModel(dir.Path, tensors);
        Assert.Equal([SafetensorsWriter.SingleFileName], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
        using var m = SafetensorsModel.Open(dir.Path);
        Assert.Equal(4, m.Tensors.Count);
    }

    [Fact]
    public void WriteFile_CallbackFails_LeavesNoFileBehind()
    {
        using var dir = new TempDir();
        string path = dir.File("x.safetensors");
        var bad = new TensorData("bad", DType.F32, [4], s => s.Write(new byte[8])); // writes 8 of 16 bytes
        var e = Assert.Throws<InvalidOperationException>(() => SafetensorsWriter.WriteFile(path, [bad]));
        Assert.Contains("'bad'", e.Message);
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void WriteFile_DuplicateNames_Throws()
    {
        using var dir = new TempDir();
        var t = TensorData.FromSingle("x", DType.F32, [1], new float[1]);
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.WriteFile(dir.File("d.safetensors"), [t, t]));
    }
}
