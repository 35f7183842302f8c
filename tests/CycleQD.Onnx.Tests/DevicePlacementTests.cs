using System.Runtime.InteropServices;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Tests;

/// <summary>
/// The placement sessions on the CPU provider: the twin of putting tensors in GPU memory (same graphs,
/// host results). Results must be new memory holding the expected values.
/// </summary>
public sealed class DevicePlacementTests
{
    [Theory]
    [InlineData(OnnxElementType.Float, 1)]
    [InlineData(OnnxElementType.Float, 2)]
    [InlineData(OnnxElementType.Float16, 2)]
    public void Copy_HoldsTheValuesInItsOwnMemory(OnnxElementType type, int rank)
    {
        long[] shape = rank == 1 ? [37] : [5, 11];
        int n = (int)shape.Aggregate(1L, (a, b) => a * b);
        var rng = new Random(3);
        var bytes = new byte[n * (type == OnnxElementType.Float ? 4 : 2)];
        if (type == OnnxElementType.Float)
            for (int i = 0; i < n; i++) BitConverter.TryWriteBytes(bytes.AsSpan(4 * i), (float)rng.NextDouble() - 0.5f);
        else
            for (int i = 0; i < n; i++) BitConverter.TryWriteBytes(bytes.AsSpan(2 * i), BitConverter.HalfToUInt16Bits((Half)(rng.NextDouble() - 0.5)));
        var expected = bytes.ToArray();
        var pin = GCHandle.Alloc(bytes, GCHandleType.Pinned);
        try
        {
            using var placement = new DevicePlacement(InferenceDevice.Cpu);
            using var source = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, LlamaWeights.OrtType(type), shape, pin.AddrOfPinnedObject(), bytes.Length);
            using var copy = placement.Copy(source, type, rank);
            Array.Fill(bytes, (byte)0xFF); // the source changes after the copy
            Assert.Equal(shape, copy.GetTensorTypeAndShape().Shape);
            Assert.Equal(expected, copy.GetTensorMutableRawData().ToArray());
        }
        finally
        {
            pin.Free();
        }
    }

    [Fact]
    public void Zeros_AreSeparateZeroFilledBuffers()
    {
        using var placement = new DevicePlacement(InferenceDevice.Cpu);
        long[] shape = [2, 3, 4, 8];
        var buffers = placement.Zeros(OnnxElementType.Float16, shape, 3);
        try
        {
            Assert.Equal(3, buffers.Length);
            foreach (var b in buffers)
            {
                Assert.Equal(shape, b.GetTensorTypeAndShape().Shape);
                Assert.All(b.GetTensorMutableRawData().ToArray(), x => Assert.Equal(0, x));
            }
            // Writing one leaves the others zero: no shared memory.
            buffers[0].GetTensorMutableRawData().Fill(0x3C);
            Assert.All(buffers[1].GetTensorMutableRawData().ToArray(), x => Assert.Equal(0, x));
            Assert.All(buffers[2].GetTensorMutableRawData().ToArray(), x => Assert.Equal(0, x));
        }
        finally
        {
            foreach (var b in buffers) b.Dispose();
        }
    }

    [Fact]
    public void GatherRows_TakesTheFirstAxisEntriesInTheGivenOrder()
    {
        using var placement = new DevicePlacement(InferenceDevice.Cpu);
        var a = Enumerable.Range(0, 4 * 6).Select(i => (float)i).ToArray();
        var b = Enumerable.Range(0, 4 * 6).Select(i => -(float)i).ToArray();
        using var va = OrtValue.CreateTensorValueFromMemory(a, [4, 1, 2, 3]);
        using var vb = OrtValue.CreateTensorValueFromMemory(b, [4, 1, 3, 2]);
        var picked = placement.GatherRows([va, vb], OnnxElementType.Float, 4, [3, 0, 3]);
        try
        {
            Assert.Equal([3L, 1, 2, 3], picked[0].GetTensorTypeAndShape().Shape);
            Assert.Equal([3L, 1, 3, 2], picked[1].GetTensorTypeAndShape().Shape);
            float[] Rows(float[] src, int[] rows) => [.. rows.SelectMany(r => src.Skip(6 * r).Take(6))];
            Assert.Equal(Rows(a, [3, 0, 3]), picked[0].GetTensorDataAsSpan<float>().ToArray());
            Assert.Equal(Rows(b, [3, 0, 3]), picked[1].GetTensorDataAsSpan<float>().ToArray());
            Assert.Throws<ArgumentException>(() => placement.GatherRows([va], OnnxElementType.Float, 4, []));
        }
        finally
        {
            foreach (var p in picked) p.Dispose();
        }
    }

    [Fact]
    public void WeightsCopiedByPlacement_RunAsTheOriginals_AndOwnTheirMemory()
    {
        var config = TinyLlama.Config(tied: false);
        var w = TinyLlama.Weights(config, seed: 5);
        using var session = ILlamaSession.Open(LlamaGraphKind.Fused, config, new LlamaGraphOptions(LastPositionLogitsOnly: true));
        using var host = LlamaWeights.FromArrays(config, w, "random");
        using var placement = new DevicePlacement(InferenceDevice.Cpu);
        using var copy = host.CopyTo(placement, LlamaWeightLayout.For(config));
        float[] Logits(LlamaWeights weights)
        {
            using var decoder = session.StartBatch(weights, 2, 6);
            return decoder.Prefill([[1, 2, 3], [4, 5]]).ToArray();
        }
        var expected = Logits(host);
        // Float32 arrays are bound in place: zeroing them changes the host set, not the copy.
        foreach (var a in w.Values) Array.Clear(a);
        Assert.Equal(expected, Logits(copy));
        Assert.NotEqual(expected, Logits(host));
    }

    [Fact]
    public void CudaProviderSettings_GrowTheArenaByWhatIsAsked()
    {
        var settings = CudaProvider.Settings(3);
        Assert.Equal("3", settings["device_id"]);
        Assert.Equal("kSameAsRequested", settings["arena_extend_strategy"]);
        // The run option that hands the emptied regions of that arena back (ONNX Runtime's key and "gpu:<id>").
        Assert.Equal(("memory.enable_memory_arena_shrinkage", "gpu:3"), CudaProvider.ArenaShrinkage(3));
    }

    [Fact]
    public void CudaProviderSettings_AreAcceptedByOnnxRuntime()
    {
        // ONNX Runtime loads its CUDA provider library to parse the options, and that library needs the CUDA 13 libraries.
        var missing = CudaProvider.Libraries.Where(lib =>
        {
            if (!NativeLibrary.TryLoad(lib, out nint h)) return true;
            NativeLibrary.Free(h);
            return false;
        }).ToList();
        if (missing.Count > 0) Assert.Skip($"needs a GPU machine's CUDA libraries ({string.Join(", ", missing)} not found)");
        var settings = CudaProvider.Settings(0);
        using var options = new OrtCUDAProviderOptions();
        options.UpdateOptions(settings);
        string applied = options.GetOptions();
        Assert.Contains("arena_extend_strategy=kSameAsRequested", applied);
        Assert.Contains("device_id=0", applied);
    }
}
