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

    /// <summary>Tied/untied head, llama3 rope scaling, head_dim 8 (RotaryEmbedding operators) or 16 (rotary inside GroupQueryAttention).</summary>
    public static TheoryData<bool, bool, int, FusedAttention> FusedVariants
    {
        get
        {
            var data = new TheoryData<bool, bool, int, FusedAttention>();
            foreach (var attention in Enum.GetValues<FusedAttention>())
                foreach (var (tied, rope, headDim) in new[] { (true, false, 8), (false, false, 8), (false, true, 8), (true, false, 16), (false, true, 16) })
                    data.Add(tied, rope, headDim, attention);
            return data;
        }
    }

    /// <summary>A float32 CPU session of the fused graph with <paramref name="attention"/> (CachedAttention needs its library).</summary>
    private static FusedLlamaSession FusedCpuSession(LlamaConfig config, FusedAttention attention)
    {
        if (attention == FusedAttention.CachedAttention)
            CpuOperatorsRequirement.Require();
        return new FusedLlamaSession(config, new LlamaGraphOptions(LastPositionLogitsOnly: true), InferenceDevice.Cpu, "config.json", 0, 0, attention);
    }

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
    /// <summary>Runs prompts then <paramref name="steps"/> greedy-free decode steps (feeding <paramref name="next"/>) and returns each call's logits.</summary>
    private static List<float[]> Decode(ILlamaSession session, LlamaWeights weights, int[][] prompts, int[][] next)
    {
        using var decoder = session.StartBatch(weights, prompts.Length, prompts.Max(p => p.Length) + next.Length);
        var all = new List<float[]> { decoder.Prefill(prompts).ToArray() };
        foreach (var tokens in next) all.Add(decoder.Decode(tokens).ToArray());
        return all;
    }

    [Theory]
    [MemberData(nameof(FusedVariants))]
    public void FusedDecoder_RightPaddedBatch_MatchesPlainGraphAndFloat64Reference(bool tied, bool llama3Rope, int headDim, FusedAttention attention)
    {
        var config = TinyLlama.Config(tied, llama3Rope ? TinyLlama.Llama3Scaling : null, headDim);
        Assert.Equal(headDim == 16, FusedLlamaGraphBuilder.RotaryInAttention(config));
        var w = TinyLlama.Weights(config, seed: 29);
        int[][] prompts = [[4, 8, 15, 16, 23, 42], [7, 7], [59, 1, 2, 3]];
        int[][] next = [[5, 6, 7], [9, 10, 11], [12, 13, 14], [30, 31, 32]];
        var options = new LlamaGraphOptions(LastPositionLogitsOnly: true);
        using var plain = ILlamaSession.Open(LlamaGraphKind.Plain, config, options);
        using var fused = FusedCpuSession(config, attention);
        using var weights = LlamaWeights.FromArrays(config, w, "random");
        var p = Decode(plain, weights, prompts, next);
        var f = Decode(fused, weights, prompts, next);
        int v = config.VocabSize;
        for (int step = 0; step < p.Count; step++)
        {
            Assert.True(TinyLlama.RelativeError(f[step], p[step].Select(x => (double)x)) < 1e-5, $"step {step}: fused and plain logits differ");
            for (int b = 0; b < prompts.Length; b++)
            {
                int[] seq = [.. prompts[b], .. next.Take(step).Select(t => t[b])];
                var expected = ReferenceLlama.Forward(config, w, seq);
                double err = TinyLlama.RelativeError(f[step].AsSpan(b * v, v), TinyLlama.Rows(expected, seq.Length - 1, 1));
                Assert.True(err < 1e-5, $"step {step}, sequence {b}: relative error {err:E3}");
            }
        }
    }

    [Theory]
    [InlineData(8, FusedAttention.GroupQueryAttention)]
    [InlineData(16, FusedAttention.GroupQueryAttention)]
    [InlineData(8, FusedAttention.CachedAttention)]
    [InlineData(16, FusedAttention.CachedAttention)]
    public void FusedDecoder_KeepRows_LeavesKeptSequencesUnchanged(int headDim, FusedAttention attention)
    {
        var config = TinyLlama.Config(tied: false, headDim: headDim);
        var w = TinyLlama.Weights(config, seed: 31);
        int[][] prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]];
        using var session = FusedCpuSession(config, attention);
        using var weights = LlamaWeights.FromArrays(config, w, "random");
        using var decoder = session.StartBatch(weights, 3, 8);
        decoder.Prefill(prompts);
        decoder.Decode([10, 11, 12]);
        decoder.KeepRows([2, 0]);
        Assert.Equal(2, decoder.Rows);
        var logits = decoder.Decode([20, 21]);
        int v = config.VocabSize;
        int[][] expectedSeqs = [[6, 7, 8, 9, 12, 20], [1, 2, 3, 10, 21]];
        for (int r = 0; r < 2; r++)
        {
            var expected = ReferenceLlama.Forward(config, w, expectedSeqs[r]);
            double err = TinyLlama.RelativeError(logits.AsSpan(r * v, v), TinyLlama.Rows(expected, expectedSeqs[r].Length - 1, 1));
            Assert.True(err < 1e-5, $"row {r}: relative error {err:E3}");
        }
    }

    [Fact]
    public void FusedDecoder_BeyondCapacity_FailsNamingTheCapacity()
    {
        var config = TinyLlama.Config(tied: true);
        using var session = ILlamaSession.Open(LlamaGraphKind.Fused, config, new LlamaGraphOptions(LastPositionLogitsOnly: true));
        using var weights = LlamaWeights.FromArrays(config, TinyLlama.Weights(config, 2), "random");
        using var decoder = session.StartBatch(weights, 1, 3);
        decoder.Prefill([[1, 2]]);
        decoder.Decode([3]);
        var e = Assert.Throws<InvalidOperationException>(() => decoder.Decode([4]));
        Assert.Contains("capacity", e.Message);
    }

    [Fact]
    public void FusedGraph_UsesContribOperatorsWithFewerNodesThanPlain()
    {
        var config = TinyLlama.Config(tied: false);
        var options = new LlamaGraphOptions(LastPositionLogitsOnly: true);
        var plain = LlamaGraphBuilder.Build(config, options);
        var fused = FusedLlamaGraphBuilder.Build(config, options);
        Assert.Equal([FusedLlamaGraphBuilder.ContribDomain], fused.Domains);
        Assert.Empty(plain.Domains);
        Assert.True(fused.NodeCount * 2 < plain.NodeCount, $"fused {fused.NodeCount} nodes, plain {plain.NodeCount}");
    }

    [Fact]
    public void FusedGraph_WithHeadDim16_TurnsQAndKInsideAttention_TwoOperatorsFewerPerLayer()
    {
        var options = new LlamaGraphOptions(LastPositionLogitsOnly: true);
        var separate = FusedLlamaGraphBuilder.Build(TinyLlama.Config(tied: false, headDim: 8), options);
        var inside = FusedLlamaGraphBuilder.Build(TinyLlama.Config(tied: false, headDim: 16), options);
        // Two layers, each without its two RotaryEmbedding nodes.
        Assert.Equal(separate.NodeCount - 4, inside.NodeCount);
    }

    [Fact]
    public void FusedGraph_WithCachedAttention_TurnsQAndKInsideAttention_AtAnyHeadDim()
    {
        var options = new LlamaGraphOptions(LastPositionLogitsOnly: true);
        var config = TinyLlama.Config(tied: false, headDim: 8);
        Assert.False(FusedLlamaGraphBuilder.RotaryInAttention(config, FusedAttention.GroupQueryAttention));
        Assert.True(FusedLlamaGraphBuilder.RotaryInAttention(config, FusedAttention.CachedAttention));
        var gqa = FusedLlamaGraphBuilder.Build(config, options, FusedAttention.GroupQueryAttention);
        var cached = FusedLlamaGraphBuilder.Build(config, options, FusedAttention.CachedAttention);
        // Per layer: no RotaryEmbedding for q and k (2), one product for q, k and v (2 fewer), one for
        // gate and up (1 fewer) and SiluMul for QuickGelu and Mul (1 fewer).
        Assert.Equal(gqa.NodeCount - 6 * config.NumHiddenLayers, cached.NodeCount);
        Assert.Equal([CpuOperators.Domain, FusedLlamaGraphBuilder.ContribDomain], cached.Domains.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void FusedSession_Float32OnCudaBFloat16OnCpuOrFullLogits_IsRejectedWithTheReason()
    {
        var config = TinyLlama.Config(tied: true);
        // Refused before any provider loads: GroupQueryAttention has no float32 CUDA kernel.
        var e1 = Assert.Throws<ArgumentException>(() => new FusedLlamaSession(config, new LlamaGraphOptions(LastPositionLogitsOnly: true), InferenceDevice.Cuda));
        Assert.Contains("--graph plain", e1.Message);
        Assert.Contains("float32", e1.Message);
        var e3 = Assert.Throws<ArgumentException>(() => new FusedLlamaSession(config, new LlamaGraphOptions(OnnxElementType.BFloat16, LastPositionLogitsOnly: true)));
        Assert.Contains("CUDA", e3.Message);
        var e2 = Assert.Throws<ArgumentException>(() => new FusedLlamaSession(config, new LlamaGraphOptions()));
        Assert.Contains("LastPositionLogitsOnly", e2.Message);
    }

    [Theory]
    [InlineData(8)]
    [InlineData(16)]
    public void FusedFloat16Graph_MatchesFloat64ReferenceToHalfPrecision(int headDim)
    {
        var config = TinyLlama.Config(tied: false, TinyLlama.Llama3Scaling, headDim);
        var w = TinyLlama.Weights(config, seed: 17);
        int[] tokens = [3, 17, 42, 0, 60, 5, 9, 33];
        var expected = ReferenceLlama.Forward(config, w, tokens);
        using var session = ILlamaSession.Open(LlamaGraphKind.Fused, config, new LlamaGraphOptions(OnnxElementType.Float16, LastPositionLogitsOnly: true));
        using var weights = LlamaWeights.FromArrays(config, w, "random", OnnxElementType.Float16);
        var logits = Decode(session, weights, [tokens[..5]], [[tokens[5]], [tokens[6]], [tokens[7]]]);
        for (int step = 0; step < logits.Count; step++)
        {
            double err = TinyLlama.RelativeError(logits[step], TinyLlama.Rows(expected, 4 + step, 1));
            Assert.True(err < 1e-2, $"step {step}: relative error {err:E3}");
            Assert.True(err > 1e-6, $"step {step}: relative error {err:E3} is below float16 resolution: the graph did not run in float16");
        }
    }

    [Fact]
    public void DefaultGraph_IsFusedWhereTheProviderHasItsKernelsAndHeadDimIsAMultipleOf8()
    {
        var config = TinyLlama.Config(tied: true);
        Assert.Equal(LlamaGraphKind.Fused, ILlamaSession.DefaultGraph(InferenceDevice.Cpu, config));
        Assert.Equal(LlamaGraphKind.Plain, ILlamaSession.DefaultGraph(InferenceDevice.Cuda, config));
        Assert.Equal(LlamaGraphKind.Fused, ILlamaSession.DefaultGraph(InferenceDevice.Cpu, config, OnnxElementType.Float16));
        Assert.Equal(LlamaGraphKind.Plain, ILlamaSession.DefaultGraph(InferenceDevice.Cpu, config, OnnxElementType.BFloat16));
        Assert.Equal(LlamaGraphKind.Fused, ILlamaSession.DefaultGraph(InferenceDevice.Cuda, config, OnnxElementType.BFloat16));
        Assert.Equal(LlamaGraphKind.Fused, ILlamaSession.DefaultGraph(InferenceDevice.Cuda, config, OnnxElementType.Float16));
        Assert.Equal(LlamaGraphKind.Plain, ILlamaSession.DefaultGraph(InferenceDevice.Cuda, config, OnnxElementType.Float));
        var narrow = config with { HiddenSize = 16, HeadDim = 4 };
        Assert.Equal(LlamaGraphKind.Plain, ILlamaSession.DefaultGraph(InferenceDevice.Cpu, narrow));
        Assert.Equal(LlamaGraphKind.Plain, ILlamaSession.DefaultGraph(InferenceDevice.Cuda, narrow, OnnxElementType.BFloat16));
        var e = Assert.Throws<TensorFormatException>(() => new FusedLlamaSession(narrow, new LlamaGraphOptions(LastPositionLogitsOnly: true), configPath: "/m/config.json"));
        Assert.Contains("head_dim 4", e.Message);
        Assert.Contains("/m/config.json", e.Message);
    }
}
