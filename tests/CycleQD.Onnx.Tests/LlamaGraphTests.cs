using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Tensors;

namespace CycleQD.Onnx.Tests;

public sealed class LlamaGraphTests
{
    private static (long[] Positions, byte[] Mask) Dense(int seq, int past = 0)
    {
        var pos = new long[seq];
        for (int i = 0; i < seq; i++) pos[i] = past + i;
        var mask = new byte[past + seq];
        Array.Fill(mask, (byte)1);
        return (pos, mask);
    }

    public static TheoryData<bool, bool> Variants => new() { { true, false }, { false, false }, { false, true } };

    [Theory]
    [MemberData(nameof(Variants))]
    public void FullSequenceLogits_MatchFloat64Reference(bool tied, bool llama3Rope)
    {
        var config = TinyLlama.Config(tied, llama3Rope ? TinyLlama.Llama3Scaling : null);
        var w = TinyLlama.Weights(config, seed: 11);
        int[] tokens = [3, 17, 42, 0, 60, 5, 5, 9, 33, 21, 7, 58];
        var expected = ReferenceLlama.Forward(config, w, tokens);

        using var session = new LlamaSession(config, new LlamaGraphOptions());
        using var weights = LlamaWeights.FromArrays(config, w, "random");
        using var empty = session.EmptyCache(1);
        var (pos, mask) = Dense(tokens.Length);
        var result = session.Run(weights, tokens.Select(t => (long)t).ToArray(), pos, mask, 1, empty);
        using var cache = result.Cache;

        Assert.Equal(tokens.Length, result.Positions);
        double err = TinyLlama.RelativeError(result.Logits, TinyLlama.Rows(expected, 0, tokens.Length));
        Assert.True(err < 1e-5, $"relative error {err:E3}");
    }

    [Fact]
    public void CachedDecodeSteps_MatchFloat64Reference()
    {
        var config = TinyLlama.Config(tied: false);
        var w = TinyLlama.Weights(config, seed: 5);
        int[] tokens = [1, 2, 3, 4, 50, 40, 30, 20, 10];
        var expected = ReferenceLlama.Forward(config, w, tokens);

        using var session = new LlamaSession(config, new LlamaGraphOptions(LastPositionLogitsOnly: true));
        using var weights = LlamaWeights.FromArrays(config, w, "random");
        int prefill = 5;
        var (pos, mask) = Dense(prefill);
        KvCache cache = session.EmptyCache(1);
        var step = session.Run(weights, tokens[..prefill].Select(t => (long)t).ToArray(), pos, mask, 1, cache);
        cache.Dispose();
        cache = step.Cache;
        Assert.True(TinyLlama.RelativeError(step.Logits, TinyLlama.Rows(expected, prefill - 1, 1)) < 1e-5);
        for (int t = prefill; t < tokens.Length; t++)
        {
            var (p1, m1) = Dense(1, t);
            step = session.Run(weights, [tokens[t]], p1, m1, 1, cache);
            cache.Dispose();
            cache = step.Cache;
            Assert.Equal(t + 1, cache.Length);
            double err = TinyLlama.RelativeError(step.Logits, TinyLlama.Rows(expected, t, 1));
            Assert.True(err < 1e-5, $"step {t}: relative error {err:E3}");
        }
        cache.Dispose();
    }

    [Fact]
    public void LeftPaddedBatch_MatchesEachSequenceAlone()
    {
        var config = TinyLlama.Config(tied: true);
        var w = TinyLlama.Weights(config, seed: 23);
        int[][] seqs = [[4, 8, 15, 16, 23, 42], [7, 7], [59, 1, 2, 3]];
        int len = seqs.Max(s => s.Length), batch = seqs.Length;
        var ids = new long[batch * len];
        var pos = new long[batch * len];
        var mask = new byte[batch * len];
        for (int b = 0; b < batch; b++)
        {
            int pad = len - seqs[b].Length;
            for (int i = 0; i < seqs[b].Length; i++)
            {
                ids[b * len + pad + i] = seqs[b][i];
                pos[b * len + pad + i] = i;
                mask[b * len + pad + i] = 1;
            }
        }
        using var session = new LlamaSession(config, new LlamaGraphOptions());
        using var weights = LlamaWeights.FromArrays(config, w, "random");
        using var empty = session.EmptyCache(batch);
        var result = session.Run(weights, ids, pos, mask, batch, empty);
        using var cache = result.Cache;
        int v = config.VocabSize;
        for (int b = 0; b < batch; b++)
        {
            var expected = ReferenceLlama.Forward(config, w, seqs[b]);
            int pad = len - seqs[b].Length;
            var actual = result.Logits.AsSpan((b * len + pad) * v, seqs[b].Length * v);
            double err = TinyLlama.RelativeError(actual, TinyLlama.Rows(expected, 0, seqs[b].Length));
            Assert.True(err < 1e-5, $"sequence {b}: relative error {err:E3}");
            Assert.DoesNotContain(result.Logits.AsSpan(b * len * v, len * v).ToArray(), x => !float.IsFinite(x));
        }
    }

    [Fact]
    public void AlternatingWeightSets_OneSession_EachGetsItsOwnLogits()
    {
        var config = TinyLlama.Config(tied: false);
        var wa = TinyLlama.Weights(config, seed: 1);
        var wb = TinyLlama.Weights(config, seed: 2);
        int[] tokens = [9, 8, 7, 6, 5];
        var ea = ReferenceLlama.Forward(config, wa, tokens);
        var eb = ReferenceLlama.Forward(config, wb, tokens);
        using var session = new LlamaSession(config, new LlamaGraphOptions());
        using var a = LlamaWeights.FromArrays(config, wa, "a");
        using var b = LlamaWeights.FromArrays(config, wb, "b");
        var (pos, mask) = Dense(tokens.Length);
        var ids = tokens.Select(t => (long)t).ToArray();
        foreach (var (weights, expected, name) in new[] { (a, ea, "a"), (b, eb, "b"), (a, ea, "a"), (b, eb, "b") })
        {
            using var empty = session.EmptyCache(1);
            var r = session.Run(weights, ids, pos, mask, 1, empty);
            r.Cache.Dispose();
            double own = TinyLlama.RelativeError(r.Logits, TinyLlama.Rows(expected, 0, tokens.Length));
            double other = TinyLlama.RelativeError(r.Logits, TinyLlama.Rows(name == "a" ? eb : ea, 0, tokens.Length));
            Assert.True(own < 1e-5, $"weights {name}: relative error {own:E3}");
            Assert.True(other > 0.1, $"weights {name} gave the other set's logits (relative difference {other:E3})");
        }
    }

    [Fact]
    public void MutatingBoundArray_NextRunSeesNewValues()
    {
        // Arrays are bound without a copy: an in-place merge into the same buffers is visible at the next run.
        var config = TinyLlama.Config(tied: true);
        var w = TinyLlama.Weights(config, seed: 3);
        int[] tokens = [1, 2, 3];
        using var session = new LlamaSession(config, new LlamaGraphOptions());
        using var weights = LlamaWeights.FromArrays(config, w, "mutable");
        var (pos, mask) = Dense(tokens.Length);
        var ids = tokens.Select(t => (long)t).ToArray();
        using (var e = session.EmptyCache(1)) session.Run(weights, ids, pos, mask, 1, e).Cache.Dispose();
        var fresh = TinyLlama.Weights(config, seed: 4);
        foreach (var (name, data) in fresh) data.CopyTo(w[name], 0);
        using var empty = session.EmptyCache(1);
        var r = session.Run(weights, ids, pos, mask, 1, empty);
        r.Cache.Dispose();
        Assert.True(TinyLlama.RelativeError(r.Logits, TinyLlama.Rows(ReferenceLlama.Forward(config, fresh, tokens), 0, 3)) < 1e-5);
    }

    [Fact]
    public void UnsupportedModelType_IsRejectedNamingIt()
    {
        var config = TinyLlama.Config(tied: true) with { ModelType = "gpt2" };
        var e = Assert.Throws<TensorFormatException>(() => new LlamaSession(config, new LlamaGraphOptions(), configPath: "/m/config.json"));
        Assert.Contains("gpt2", e.Message);
        Assert.Contains("/m/config.json", e.Message);
    }

    [Fact]
    public void Float16Graph_LogitsMatchFloat64ReferenceToHalfPrecision()
    {
        // Runs on the CPU provider through the casts ONNX Runtime inserts around float16 operators.
        var config = TinyLlama.Config(tied: false, TinyLlama.Llama3Scaling);
        var w = TinyLlama.Weights(config, seed: 17);
        int[] tokens = [3, 17, 42, 0, 60, 5, 9, 33];
        var expected = ReferenceLlama.Forward(config, w, tokens);
        using var session = new LlamaSession(config, new LlamaGraphOptions(OnnxElementType.Float16));
        using var weights = LlamaWeights.FromArrays(config, w, "random", OnnxElementType.Float16);
        using var empty = session.EmptyCache(1);
        var (pos, mask) = Dense(tokens.Length);
        var result = session.Run(weights, tokens.Select(t => (long)t).ToArray(), pos, mask, 1, empty);
        result.Cache.Dispose();
        double err = TinyLlama.RelativeError(result.Logits, TinyLlama.Rows(expected, 0, tokens.Length));
        Assert.True(err < 1e-2, $"relative error {err:E3}");
        Assert.True(err > 1e-6, $"relative error {err:E3} is below float16 resolution: the graph did not run in float16");
    }

    [Fact]
    public void BFloat16Graph_PassesTypeInferenceAndNeedsCuda()
    {
        // The CPU provider has no bfloat16 kernels: loading fails at kernel lookup, which comes after
        // the graph's types and shapes were resolved. Running it needs the CUDA provider (not here).
        var config = TinyLlama.Config(tied: false);
        var bytes = LlamaGraphBuilder.Build(config, new LlamaGraphOptions(OnnxElementType.BFloat16, true)).ToModelBytes();
        var e = Assert.Throws<Microsoft.ML.OnnxRuntime.OnnxRuntimeException>(() => new Microsoft.ML.OnnxRuntime.InferenceSession(bytes));
        Assert.Contains("Could not find an implementation", e.Message);
        Assert.Throws<ArgumentException>(() => new LlamaSession(config, new LlamaGraphOptions(OnnxElementType.BFloat16)));
    }
}
