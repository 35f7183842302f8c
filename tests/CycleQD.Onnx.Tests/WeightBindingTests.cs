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
    [Fact]
    public void FusedSession_SafetensorsAndArrays_AlternatingBetweenTwoWeightSets_EachGetsItsOwnLogits()
    {
        // The fused graph keeps every weight a named input: one session, weight sets swapped per batch.
        var config = TinyLlama.Config(tied: false);
        var wa = TinyLlama.Weights(config, seed: 1);
        var wb = TinyLlama.Weights(config, seed: 2);
        int[] tokens = [9, 8, 7, 6, 5];
        var ea = ReferenceLlama.Forward(config, wa, tokens);
        var eb = ReferenceLlama.Forward(config, wb, tokens);
        using var session = ILlamaSession.Open(LlamaGraphKind.Fused, config, new LlamaGraphOptions(LastPositionLogitsOnly: true));
        using var a = LlamaWeights.FromArrays(config, wa, "a");
        using var b = LlamaWeights.FromArrays(config, wb, "b");
        foreach (var (weights, expected, other, name) in new[] { (a, ea, eb, "a"), (b, eb, ea, "b"), (a, ea, eb, "a") })
        {
            using var decoder = session.StartBatch(weights, 1, tokens.Length);
            var logits = decoder.Prefill([tokens]);
            double own = TinyLlama.RelativeError(logits, TinyLlama.Rows(expected, tokens.Length - 1, 1));
            double wrong = TinyLlama.RelativeError(logits, TinyLlama.Rows(other, tokens.Length - 1, 1));
            Assert.True(own < 1e-5, $"weights {name}: relative error {own:E3}");
            Assert.True(wrong > 0.1, $"weights {name} gave the other set's logits (relative difference {wrong:E3})");
        }
        // Arrays are bound without a copy: an in-place merge into the same buffers shows at the next batch.
        foreach (var (n, data) in wb) data.CopyTo(wa[n], 0);
        using var again = session.StartBatch(a, 1, tokens.Length);
        Assert.True(TinyLlama.RelativeError(again.Prefill([tokens]), TinyLlama.Rows(eb, tokens.Length - 1, 1)) < 1e-5);
    }

    [Fact]
    public void FusedSession_Stories260KSafetensors_MatchesArrayBindingAndPlainGraph()
    {
        var folder = HfModelFolder.Open(TestPaths.Stories260K);
        using var file = folder.OpenWeights();
        using var mapped = LlamaWeights.FromSafetensors(file, folder.Config);
        var arrays = LlamaWeightLayout.For(folder.Config).ToDictionary(s => s.Name, s => file.ReadSingle(s.Name));
        using var copied = LlamaWeights.FromArrays(folder.Config, arrays, "arrays");
        var options = new LlamaGraphOptions(LastPositionLogitsOnly: true);
        using var fused = ILlamaSession.Open(LlamaGraphKind.Fused, folder.Config, options);
        using var plain = ILlamaSession.Open(LlamaGraphKind.Plain, folder.Config, options);
        int[] ids = [1, 403, 407];
        float[] Last(ILlamaSession s, LlamaWeights w)
        {
            using var d = s.StartBatch(w, 1, ids.Length);
            return d.Prefill([ids]).ToArray();
        }
        var a = Last(fused, mapped);
        Assert.Equal(Last(fused, copied), a);
        Assert.True(TinyLlama.RelativeError(a, Last(plain, mapped).Select(x => (double)x)) < 1e-5);
    }

    [Fact]
    public void HalfWeightsOnFusedFloatSession_AreRejected()
    {
        var config = TinyLlama.Config(tied: true);
        using var half = LlamaWeights.FromArrays(config, TinyLlama.Weights(config, 1), "half", OnnxElementType.Float16);
        using var session = ILlamaSession.Open(LlamaGraphKind.Fused, config, new LlamaGraphOptions(LastPositionLogitsOnly: true));
        var e = Assert.Throws<ArgumentException>(() => session.StartBatch(half, 1, 4));
        Assert.Contains("Float16", e.Message);
    }
}
