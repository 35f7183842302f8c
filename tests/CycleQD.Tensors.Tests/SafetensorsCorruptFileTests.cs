using System.Text;
using CycleQD.Testing;
using CycleQD.Tensors;

namespace CycleQD.Tensors.Tests;

public class SafetensorsCorruptFileTests
{
    private static string WriteRaw(TempDir dir, string header, int dataBytes, ulong? declaredLength = null)
    {
        string path = dir.File("bad.safetensors");
        byte[] h = Encoding.UTF8.GetBytes(header);
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes(declaredLength ?? (ulong)h.Length));
        fs.Write(h);
        fs.Write(new byte[dataBytes]);
        return path;
    }

    private static TensorFormatException OpenFails(string path)
    {
        var e = Assert.Throws<TensorFormatException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        Assert.Equal(path, e.FilePath);
        return e;
    }

    [Fact]
    public void Open_HeaderLengthPastEndOfFile_NamesFile()
    {
        using var dir = new TempDir();
        var e = OpenFails(WriteRaw(dir, "{}", 0, declaredLength: 1_000_000));
        Assert.Contains("past the end of the file", e.Message);
    }

    [Fact]
    public void Open_FileShorterThanLengthPrefix_NamesFile()
    {
        using var dir = new TempDir();
        string path = dir.File("tiny.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        var e = OpenFails(path);
        Assert.Contains("too short", e.Message);
    }

    [Theory]
    [InlineData("{\"a\": {\"dtype\": \"F32\", ")]
    [InlineData("not json at all")]
    [InlineData("[1, 2]")]
    [InlineData("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}} trailing")]
    public void Open_InvalidJson_NamesFile(string header)
    {
        using var dir = new TempDir();
        var e = OpenFails(WriteRaw(dir, header, 4));
        Assert.Contains("header", e.Message);
    }

    [Fact]
    public void Open_UnknownDType_NamesTensor()
    {
        using var dir = new TempDir();
        var e = OpenFails(WriteRaw(dir, "{\"w\": {\"dtype\": \"F33\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4));
        Assert.Equal("w", e.TensorName);
        Assert.Contains("unknown dtype 'F33'", e.Message);
    }

    [Fact]
    public void Open_ShapeDisagreesWithByteRange_NamesTensor()
    {
        using var dir = new TempDir();
        var e = OpenFails(WriteRaw(dir, "{\"w\": {\"dtype\": \"BF16\", \"shape\": [2, 3], \"data_offsets\": [0, 8]}}", 8));
        Assert.Equal("w", e.TensorName);
        Assert.Contains("needs 12 bytes", e.Message);
    }

    [Fact]
    public void Open_RangeOutsideDataSection_NamesTensor()
    {
        using var dir = new TempDir();
        var e = OpenFails(WriteRaw(dir, "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 12));
        Assert.Equal("w", e.TensorName);
        Assert.Contains("outside the data section", e.Message);
    }

    [Fact]
    public void Open_TruncatedRealFile_NamesFileAndTensor()
    {
        using var dir = new TempDir();
        string path = dir.File("model.safetensors");
        SafetensorsWriter.WriteFile(path,
        [
            TensorData.FromSingle("first", DType.F32, [64], new float[64]),
            TensorData.FromSingle("last", DType.F32, [64], new float[64]),
        ]);
        using (var fs = new FileStream(path, FileMode.Open)) fs.SetLength(fs.Length - 10);
        var e = OpenFails(path);
        Assert.Equal("last", e.TensorName);
    }

    [Fact]
    public void Open_OverlappingRanges_NamesBothTensors()
    {
        using var dir = new TempDir();
        var e = OpenFails(WriteRaw(dir,
            "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12));
        Assert.Contains("overlaps", e.Message);
        Assert.Contains("'a'", e.Message);
        Assert.Contains("'b'", e.Message);
    }

    [Fact]
    public void Open_DuplicateNames_NamesTensor()
    {
        using var dir = new TempDir();
        var e = OpenFails(WriteRaw(dir,
            "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8));
        Assert.Equal("a", e.TensorName);
        Assert.Contains("duplicate", e.Message);
    }

    [Fact]
    public void Open_NegativeOrReversedOffsets_NamesTensor()
    {
        using var dir = new TempDir();
        var e = OpenFails(WriteRaw(dir, "{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}", 8));
        Assert.Equal("a", e.TensorName);
    }

    [Fact]
    public void Open_MissingFile_NamesFile()
    {
        using var dir = new TempDir();
        var e = OpenFails(dir.File("nope.safetensors"));
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void OpenModel_IndexNamesMissingShard_NamesShard()
    {
        using var dir = new TempDir();
        var tensors = Enumerable.Range(0, 3).Select(i => TensorData.FromSingle($"t{i}", DType.F32, [10], new float[10])).ToList();
        SafetensorsWriter.WriteModel(dir.Path, tensors, maxShardBytes: 40);
        File.Delete(dir.File("model-00002-of-00003.safetensors"));
        var e = Assert.Throws<TensorFormatException>(() => SafetensorsModel.Open(dir.Path).Dispose());
        Assert.Contains("model-00002-of-00003.safetensors", e.Message);
    }

    [Fact]
    public void OpenModel_IndexListsTensorMissingFromShard_NamesTensor()
    {
        using var dir = new TempDir();
        var tensors = Enumerable.Range(0, 2).Select(i => TensorData.FromSingle($"t{i}", DType.F32, [10], new float[10])).ToList();
        SafetensorsWriter.WriteModel(dir.Path, tensors, maxShardBytes: 40);
        string index = dir.File(SafetensorsWriter.IndexFileName);
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(index))!;
        json["weight_map"]!["ghost"] = "model-00002-of-00002.safetensors";
        File.WriteAllText(index, json.ToJsonString());
        var e = Assert.Throws<TensorFormatException>(() => SafetensorsModel.Open(dir.Path).Dispose());
        Assert.Equal("ghost", e.TensorName);
    }

    [Fact]
    public void OpenModel_SameTensorInTwoShards_NamesTensor()
    {
        using var dir = new TempDir();
        SafetensorsWriter.WriteFile(dir.File("a.safetensors"), [TensorData.FromSingle("w", DType.F32, [1], new float[1])]);
        SafetensorsWriter.WriteFile(dir.File("b.safetensors"), [TensorData.FromSingle("w", DType.F32, [1], new float[1])]);
        var e = Assert.Throws<TensorFormatException>(() => SafetensorsModel.Open(dir.Path).Dispose());
        Assert.Equal("w", e.TensorName);
        Assert.Contains("also present", e.Message);
    }

    [Fact]
    public void OpenModel_EmptyFolder_SaysNoWeights()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<TensorFormatException>(() => SafetensorsModel.Open(dir.Path).Dispose());
        Assert.Contains("no model.safetensors", e.Message);
    }
}
