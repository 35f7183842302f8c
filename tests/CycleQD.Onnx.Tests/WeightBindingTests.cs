using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

public sealed class WeightBindingTests
{
    [Fact]
    public void SafetensorsF32_BindsAndMatchesArrayBinding()
    {
        var folder = HfModelFolder.Open(TestPaths.Stories260K);
        using var file = folder.OpenWeights();
        using var mapped = LlamaWeights.FromSafetensors(file, folder.Config);
        var arrays = LlamaWeightLayout.For(folder.Config).ToDictionary(s => s.Name, s => file.ReadSingle(s.Name));
        using var copied = LlamaWeights.FromArrays(folder.Config, arrays, "arrays");
        using var session = new LlamaSession(folder.Config, new LlamaGraphOptions());
        long[] ids = [1, 403, 407];
        float[] a, b;
        using (var e = session.EmptyCache(1)) { var r = session.Run(mapped, ids, [0, 1, 2], [1, 1, 1], 1, e); r.Cache.Dispose(); a = r.Logits; }
        using (var e = session.EmptyCache(1)) { var r = session.Run(copied, ids, [0, 1, 2], [1, 1, 1], 1, e); r.Cache.Dispose(); b = r.Logits; }
        Assert.Equal(b, a);
    }

    [Fact]
    public void HalfWeightsOnFloatSession_AreRejected()
    {
        var config = TinyLlama.Config(tied: true);
        using var half = LlamaWeights.FromArrays(config, TinyLlama.Weights(config, 1), "half", OnnxElementType.Float16);
        Assert.Equal(OnnxElementType.Float16, half.ElementType);
        using var session = new LlamaSession(config, new LlamaGraphOptions());
        using var empty = session.EmptyCache(1);
        var e = Assert.Throws<ArgumentException>(() => session.Run(half, [1], [0], [1], 1, empty));
        Assert.Contains("Float16", e.Message);
    }

    [Fact]
    public void CudaMemoryBinding_ChecksNamesAndByteLengths()
    {
        // Device pointers are only described here (nothing is dereferenced); running them needs the CUDA provider.
        var config = TinyLlama.Config(tied: false);
        var specs = LlamaWeightLayout.For(config);
        var tensors = specs.ToDictionary(s => s.Name, s => ((nint)0x10001000, s.Shape.Aggregate(1L, (a, b) => a * b) * 2));
        using (var ok = LlamaWeights.FromCudaMemory(config, tensors, OnnxElementType.BFloat16, 0, "device"))
            Assert.Equal(OnnxElementType.BFloat16, ok.ElementType);
        var wrong = new Dictionary<string, (nint, long)>(tensors) { [LlamaWeightLayout.LmHead] = ((nint)0x10001000, 12) };
        var e1 = Assert.Throws<TensorFormatException>(() => LlamaWeights.FromCudaMemory(config, wrong, OnnxElementType.BFloat16, 0, "device"));
        Assert.Contains(LlamaWeightLayout.LmHead, e1.Message);
        var missing = new Dictionary<string, (nint, long)>(tensors);
        missing.Remove(LlamaWeightLayout.FinalNorm);
        var e2 = Assert.Throws<TensorFormatException>(() => LlamaWeights.FromCudaMemory(config, missing, OnnxElementType.BFloat16, 0, "device"));
        Assert.Contains(LlamaWeightLayout.FinalNorm, e2.Message);
    }
}
