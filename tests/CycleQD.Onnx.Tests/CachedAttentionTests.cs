using CycleQD.Core;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Tests;

/// <summary>
/// CycleQD's CPU attention operator (native/ortops, <see cref="CpuOperators"/>) alone, in a one-node
/// graph, against a float64 attention computed here: fresh random inputs, outputs poisoned with NaN
/// before every run. The decoder-level tests (LlamaGraphTests) run it inside the fused Llama graph.
/// </summary>
public class CachedAttentionTests
{
    /// <summary>
    /// A graph of one CachedAttention node over the fused graph's input and output names; with
    /// <paramref name="packed"/>, q holds each token's query, key and value and k and v are left out.
    /// </summary>
    private static InferenceSession Session(int heads, int kvHeads, int headDim, float scale, bool rotary = false, bool packed = false)
    {
        var g = new OnnxGraph("cached_attention");
        var f = OnnxElementType.Float;
        // The width is left symbolic, so that a wrong one reaches the operator (and its message).
        string q = g.Input("q", f, "batch", "seq", "q_width");
        string k = packed ? "" : g.Input("k", f, "batch", "seq", kvHeads * headDim);
        string v = packed ? "" : g.Input("v", f, "batch", "seq", kvHeads * headDim);
        string pk = g.Input("past_key", f, "batch", kvHeads, "capacity", headDim);
        string pv = g.Input("past_value", f, "batch", kvHeads, "capacity", headDim);
        string lens = g.Input("seqlens_k", OnnxElementType.Int32, "batch");
        string total = g.Input("total_sequence_length", OnnxElementType.Int32);
        string[] inputs = [q, k, v, pk, pv, lens, total];
        if (rotary) inputs = [.. inputs, g.Input("cos_cache", f, "positions", headDim / 2), g.Input("sin_cache", f, "positions", headDim / 2)];
        g.DomainNode(CpuOperators.Domain, "CachedAttention", inputs, ["out", "present_key", "present_value"],
            ("num_heads", (long)heads), ("kv_num_heads", (long)kvHeads), ("scale", scale));
        g.Output("out", "out", f, "batch", "seq", heads * headDim);
        g.Output("present_key", "present_key", f, "batch", kvHeads, "capacity", headDim);
        g.Output("present_value", "present_value", f, "batch", kvHeads, "capacity", headDim);
        using var so = new SessionOptions();
        return CpuOperators.CreateSession(g.ToModelBytes(), so);
    }

    private static float[] Random(Random rng, int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

    /// <summary>
    /// Runs the one-node graph on <paramref name="batch"/> rows of <paramref name="seq"/> tokens, with
    /// past and present bound to the same <paramref name="keys"/> and <paramref name="values"/> buffers
    /// (as the fused decoder binds them) and the output written into <paramref name="output"/>.
    /// </summary>
    private static void RunInPlace(InferenceSession session, int batch, int seq, int heads, int kvHeads, int headDim,
        float[] q, float[] k, float[] v, OrtValue keys, OrtValue values, int[] seqLens, int total, float[] output,
        (OrtValue Cos, OrtValue Sin)? rotary = null, bool packed = false)
    {
        using var binding = session.CreateIoBinding();
        var inputs = new List<OrtValue>();
        try
        {
            if (packed)
            {
                // Each token's query, key and value side by side, as one matrix product makes them.
                int qw = heads * headDim, kw = kvHeads * headDim, tokens = batch * seq;
                var qkv = new float[tokens * (qw + 2 * kw)];
                for (int i = 0; i < tokens; i++)
                {
                    q.AsSpan(i * qw, qw).CopyTo(qkv.AsSpan(i * (qw + 2 * kw)));
                    k.AsSpan(i * kw, kw).CopyTo(qkv.AsSpan(i * (qw + 2 * kw) + qw));
                    v.AsSpan(i * kw, kw).CopyTo(qkv.AsSpan(i * (qw + 2 * kw) + qw + kw));
                }
                inputs.Add(OrtValue.CreateTensorValueFromMemory(qkv, [batch, seq, qw + 2 * kw]));
                binding.BindInput("q", inputs[^1]);
            }
            else
            {
                inputs.Add(OrtValue.CreateTensorValueFromMemory(q, [batch, seq, heads * headDim]));
                binding.BindInput("q", inputs[^1]);
                inputs.Add(OrtValue.CreateTensorValueFromMemory(k, [batch, seq, kvHeads * headDim]));
                binding.BindInput("k", inputs[^1]);
                inputs.Add(OrtValue.CreateTensorValueFromMemory(v, [batch, seq, kvHeads * headDim]));
                binding.BindInput("v", inputs[^1]);
            }
            Run(session, binding, batch, seq, heads, headDim, keys, values, seqLens, total, output, rotary);
        }
        finally
        {
            foreach (var value in inputs) value.Dispose();
        }
    }

    private static void Run(InferenceSession session, OrtIoBinding binding, int batch, int seq, int heads, int headDim,
        OrtValue keys, OrtValue values, int[] seqLens, int total, float[] output, (OrtValue Cos, OrtValue Sin)? rotary)
    {
        using var lensValue = OrtValue.CreateTensorValueFromMemory(seqLens, [seqLens.Length]);
        using var totalValue = OrtValue.CreateTensorValueFromMemory(new[] { total }, []);
        using var outValue = OrtValue.CreateTensorValueFromMemory(output, [batch, seq, heads * headDim]);
        binding.BindInput("past_key", keys);
        binding.BindInput("past_value", values);
        binding.BindInput("seqlens_k", lensValue);
        binding.BindInput("total_sequence_length", totalValue);
        if (rotary is var (cos, sin))
        {
            binding.BindInput("cos_cache", cos);
            binding.BindInput("sin_cache", sin);
        }
        binding.BindOutput("out", outValue);
        binding.BindOutput("present_key", keys);
        binding.BindOutput("present_value", values);
        using var runOptions = new RunOptions();
        session.RunWithBinding(runOptions, binding);
    }

    /// <summary>Turns x (rotate_half layout) by angles pos·θᵢ in float64.</summary>
    private static double[] Turn(ReadOnlySpan<float> x, int pos, double[] theta)
    {
        int half = x.Length / 2;
        var o = new double[x.Length];
        for (int i = 0; i < half; i++)
        {
            double c = Math.Cos(pos * theta[i]), s = Math.Sin(pos * theta[i]);
            o[i] = x[i] * c - x[i + half] * s;
            o[i + half] = x[i + half] * c + x[i] * s;
        }
        return o;
    }

    /// <summary>
    /// A right-padded prompt batch, then decoding steps, through one KV buffer bound as past and present;
    /// each run's output against softmax(q·kᵀ·scale)·v in float64 over the row's own tokens (with the
    /// rotary tables: q and k turned to their positions first, in float64).
    /// </summary>
    [Theory]
    [InlineData(8, 4, 8, false, 1, false)]     // stories260K / TinySkills shape, two query heads per kv head
    [InlineData(8, 4, 8, true, 1, false)]
    [InlineData(8, 4, 8, true, 1, true)]       // q, k and v packed in one input, as the fused graph gives them
    [InlineData(8, 4, 8, true, 4, false)]      // several tiles of 8 keys; capacity 32, a multiple of 8
    [InlineData(8, 4, 8, false, 5, true)]      // capacity 39: a narrower last tile, reached by the last step
    [InlineData(4, 4, 16, false, 1, false)]    // one query head per kv head
    [InlineData(6, 2, 16, true, 3, true)]      // three query heads per kv head (attended one at a time)
    [InlineData(8, 1, 32, true, 3, false)]     // eight query heads per kv head
    [InlineData(8, 2, 24, true, 1, false)]     // head_dim with no specialized path
    [InlineData(8, 2, 24, false, 5, true)]
    [InlineData(4, 1, 128, false, 1, false)]   // Llama-3's head_dim, four query heads per kv head
    [InlineData(4, 1, 128, true, 4, true)]
    public void PromptThenDecode_MatchesFloat64Attention(int heads, int kvHeads, int headDim, bool rotary, int promptScale, bool packed)
    {
        CpuOperatorsRequirement.Require();
        var rng = new Random(heads * 1000 + kvHeads * 100 + headDim + (rotary ? 1 : 0) + promptScale * 7);
        // Prompts of [5, 2, 7] × promptScale tokens; the buffer holds the longest and the decoding steps, plus one.
        int[] promptLengths = [5 * promptScale, 2 * promptScale, 7 * promptScale];
        int batch = promptLengths.Length, decodeSteps = 3, capacity = promptLengths.Max() + decodeSteps + 1;
        float scale = (float)(1 / Math.Sqrt(headDim));
        int group = heads / kvHeads;
        using var session = Session(heads, kvHeads, headDim, scale, rotary, packed);
        // Rotary angles θᵢ = 10000^(−2i/d), tables [capacity, d/2] in float32 as the decoder builds them.
        var theta = Enumerable.Range(0, headDim / 2).Select(i => Math.Pow(10000, -2.0 * i / headDim)).ToArray();
        var cosTable = new float[capacity * headDim / 2];
        var sinTable = new float[capacity * headDim / 2];
        for (int p = 0; p < capacity; p++)
            for (int i = 0; i < headDim / 2; i++)
            {
                cosTable[p * headDim / 2 + i] = (float)Math.Cos(p * theta[i]);
                sinTable[p * headDim / 2 + i] = (float)Math.Sin(p * theta[i]);
            }
        using var cosValue = OrtValue.CreateTensorValueFromMemory(cosTable, [capacity, headDim / 2]);
        using var sinValue = OrtValue.CreateTensorValueFromMemory(sinTable, [capacity, headDim / 2]);
        // Each row's keys (turned, when rotary) and values so far, [position][kv head * headDim + i].
        var keys = Enumerable.Range(0, batch).Select(_ => new List<double[]>()).ToArray();
        var values = Enumerable.Range(0, batch).Select(_ => new List<float[]>()).ToArray();
        // The buffers start as garbage (the fused decoder zero-fills them, but no slot past a row's length may matter).
        var keyBuffer = Random(rng, batch * kvHeads * capacity * headDim);
        var valueBuffer = Random(rng, batch * kvHeads * capacity * headDim);
        using var keyValue = OrtValue.CreateTensorValueFromMemory(keyBuffer, [batch, kvHeads, capacity, headDim]);
        using var valueValue = OrtValue.CreateTensorValueFromMemory(valueBuffer, [batch, kvHeads, capacity, headDim]);
        var lengths = new int[batch];
        for (int step = 0; step <= decodeSteps; step++)
        {
            bool prompt = step == 0;
            int seq = prompt ? promptLengths.Max() : 1;
            var q = Random(rng, batch * seq * heads * headDim);
            var k = Random(rng, batch * seq * kvHeads * headDim);
            var v = Random(rng, batch * seq * kvHeads * headDim);
            for (int b = 0; b < batch; b++)
            {
                int fresh = prompt ? promptLengths[b] : 1;
                for (int t = 0; t < fresh; t++)
                {
                    int pos = keys[b].Count;
                    var key = new double[kvHeads * headDim];
                    for (int kvh = 0; kvh < kvHeads; kvh++)
                    {
                        var raw = k.AsSpan((b * seq + t) * kvHeads * headDim + kvh * headDim, headDim);
                        var turned = rotary ? Turn(raw, pos, theta) : raw.ToArray().Select(x => (double)x).ToArray();
                        turned.CopyTo(key, kvh * headDim);
                    }
                    keys[b].Add(key);
                    values[b].Add(v.AsSpan((b * seq + t) * kvHeads * headDim, kvHeads * headDim).ToArray());
                }
                lengths[b] = keys[b].Count;
            }
            var seqLens = lengths.Select(n => n - 1).ToArray();
            int total = prompt ? seq : lengths.Max();
            var output = Enumerable.Repeat(float.NaN, batch * seq * heads * headDim).ToArray();
            RunInPlace(session, batch, seq, heads, kvHeads, headDim, q, k, v, keyValue, valueValue, seqLens, total, output,
                rotary ? (cosValue, sinValue) : null, packed);

            double errSq = 0, refSq = 0;
            for (int b = 0; b < batch; b++)
            {
                int fresh = prompt ? promptLengths[b] : 1, first = lengths[b] - fresh;
                for (int t = 0; t < fresh; t++)
                    for (int h = 0; h < heads; h++)
                    {
                        int kvh = h / group, upTo = first + t + 1;
                        var qRaw = q.AsSpan((b * seq + t) * heads * headDim + h * headDim, headDim);
                        var qh = rotary ? Turn(qRaw, first + t, theta) : qRaw.ToArray().Select(x => (double)x).ToArray();
                        var scores = new double[upTo];
                        for (int p = 0; p < upTo; p++)
                        {
                            double dot = 0;
                            for (int i = 0; i < headDim; i++) dot += qh[i] * keys[b][p][kvh * headDim + i];
                            scores[p] = dot * scale;
                        }
                        double max = scores.Max(), sum = scores.Sum(s => Math.Exp(s - max));
                        for (int i = 0; i < headDim; i++)
                        {
                            double expected = 0;
                            for (int p = 0; p < upTo; p++) expected += Math.Exp(scores[p] - max) / sum * values[b][p][kvh * headDim + i];
                            double got = output[(b * seq + t) * heads * headDim + h * headDim + i];
                            errSq += (got - expected) * (got - expected);
                            refSq += expected * expected;
                        }
                    }
            }
            double rel = Math.Sqrt(errSq / refSq);
            Assert.True(rel < 1e-5, $"step {step}: relative error {rel:E3} (NaN would mean a real token's output was never written)");
        }
    }

    [Fact]
    public void PresentNotBoundToThePast_IsRefusedNamingTheContract()
    {
        CpuOperatorsRequirement.Require();
        using var session = Session(2, 1, 8, 0.35f);
        var inputs = new Dictionary<string, OrtValue>
        {
            ["q"] = OrtValue.CreateTensorValueFromMemory(new float[16], [1, 1, 16]),
            ["k"] = OrtValue.CreateTensorValueFromMemory(new float[8], [1, 1, 8]),
            ["v"] = OrtValue.CreateTensorValueFromMemory(new float[8], [1, 1, 8]),
            ["past_key"] = OrtValue.CreateTensorValueFromMemory(new float[32], [1, 1, 4, 8]),
            ["past_value"] = OrtValue.CreateTensorValueFromMemory(new float[32], [1, 1, 4, 8]),
            ["seqlens_k"] = OrtValue.CreateTensorValueFromMemory(new[] { 1 }, [1]),
            ["total_sequence_length"] = OrtValue.CreateTensorValueFromMemory(new[] { 2 }, []),
        };
        try
        {
            using var runOptions = new RunOptions();
            var e = Assert.Throws<OnnxRuntimeException>(() => session.Run(runOptions, inputs, session.OutputNames));
            Assert.Contains("appends in place", e.Message);
        }
        finally
        {
            foreach (var value in inputs.Values) value.Dispose();
        }
    }

    [Theory]
    [InlineData(4, 5, "does not fit")]   // a row longer than the buffer
    [InlineData(-1, 2, "does not fit")]  // a negative length
    public void SequenceLengthsOutsideTheBuffer_AreRefusedNamingTheRow(int seqLen, int total, string expected)
    {
        CpuOperatorsRequirement.Require();
        using var session = Session(2, 1, 8, 0.35f);
        using var keys = OrtValue.CreateTensorValueFromMemory(new float[32], [1, 1, 4, 8]);
        using var values = OrtValue.CreateTensorValueFromMemory(new float[32], [1, 1, 4, 8]);
        var e = Assert.Throws<OnnxRuntimeException>(() =>
            RunInPlace(session, 1, 1, 2, 1, 8, new float[16], new float[8], new float[8], keys, values, [seqLen], total, new float[16]));
        Assert.Contains("seqlens_k[0]", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void ShapesThatDisagree_AreRefusedNamingEachShape()
    {
        CpuOperatorsRequirement.Require();
        using var session = Session(2, 1, 8, 0.35f);
        using var keys = OrtValue.CreateTensorValueFromMemory(new float[32], [1, 1, 4, 8]);
        using var values = OrtValue.CreateTensorValueFromMemory(new float[32], [1, 1, 4, 8]);
        // One row of q, k and v, but two sequence lengths.
        var e = Assert.Throws<OnnxRuntimeException>(() =>
            RunInPlace(session, 1, 1, 2, 1, 8, new float[16], new float[8], new float[8], keys, values, [0, 0], 2, new float[16]));
        Assert.Contains("q [1, 1, 16]", e.Message);
        Assert.Contains("past_key [1, 1, 4, 8]", e.Message);
        Assert.Contains("seqlens_k of 2", e.Message);
    }

    [Fact]
    public void PackedInputOfTheWrongWidth_IsRefusedSayingItIsPacked()
    {
        CpuOperatorsRequirement.Require();
        using var session = Session(2, 1, 8, 0.35f, packed: true);
        using var keys = OrtValue.CreateTensorValueFromMemory(new float[32], [1, 1, 4, 8]);
        using var values = OrtValue.CreateTensorValueFromMemory(new float[32], [1, 1, 4, 8]);
        using var binding = session.CreateIoBinding();
        // The query alone (16 values), where the packed input holds query, key and value (32).
        using var q = OrtValue.CreateTensorValueFromMemory(new float[16], [1, 1, 16]);
        binding.BindInput("q", q);
        var e = Assert.Throws<OnnxRuntimeException>(() => Run(session, binding, 1, 1, 2, 8, keys, values, [0], 1, new float[16], null));
        Assert.Contains("q [1, 1, 16] (packed with k and v)", e.Message);
    }

    [Fact]
    public void PackedWeights_StackQkvAndGateUpPerLayer_OnlyWithCachedAttention()
    {
        var config = TinyLlama.Config(tied: false);
        var all = LlamaWeightLayout.For(config);
        Assert.Empty(FusedLlamaGraphBuilder.PackedWeights(config, FusedAttention.GroupQueryAttention));
        Assert.Equal(all.Select(w => w.Name), FusedLlamaGraphBuilder.GraphWeights(config, FusedAttention.GroupQueryAttention).Select(w => w.Name));

        var packed = FusedLlamaGraphBuilder.PackedWeights(config, FusedAttention.CachedAttention);
        var own = FusedLlamaGraphBuilder.GraphWeights(config, FusedAttention.CachedAttention);
        Assert.Equal(2 * config.NumHiddenLayers, packed.Count);
        // Every model weight is read exactly once: as an input of its own or inside one stack.
        Assert.Equal(all.Select(w => w.Name).Order(), own.Select(w => w.Name).Concat(packed.SelectMany(p => p.Sources)).Order());
        var shapes = all.ToDictionary(w => w.Name, w => w.Shape);
        foreach (var p in packed)
        {
            Assert.Equal(p.Sources.Sum(name => shapes[name][0]), p.Shape[0]);
            Assert.All(p.Sources, name => Assert.Equal(shapes[name][1], p.Shape[1]));
        }
        Assert.Equal(["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight"], packed[0].Sources);
        Assert.Equal(["model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"], packed[1].Sources);
    }

    [Fact]
    public void ALargeModel_KeepsItsProjectionsSeparate_InAGraphThatLoads()
    {
        CpuOperatorsRequirement.Require();
        // Llama-3-8B's shape: stacking its projections would copy gigabytes per batch.
        var big = TinyLlama.Config(tied: false) with
        {
            HiddenSize = 4096, IntermediateSize = 14336, NumHiddenLayers = 32, NumAttentionHeads = 32, NumKeyValueHeads = 8, HeadDim = 128, VocabSize = 128256,
        };
        Assert.Empty(FusedLlamaGraphBuilder.PackedWeights(big, FusedAttention.CachedAttention));
        // The weights are graph inputs, so the session opens without them: its inputs are the separate projections.
        using var session = new FusedLlamaSession(big, new LlamaGraphOptions(LastPositionLogitsOnly: true), InferenceDevice.Cpu, "config.json", 0, 0, FusedAttention.CachedAttention);
        Assert.Empty(session.PackedWeights);
        Assert.Equal(LlamaWeightLayout.For(big).Select(w => w.Name), session.Weights.Select(w => w.Name));
    }

    [Fact]
    public void DefaultAttention_IsCachedAttentionOnlyOnTheCpuInFloat32()
    {
        CpuOperatorsRequirement.Require();
        Assert.Equal(FusedAttention.CachedAttention, FusedLlamaSession.DefaultAttention(InferenceDevice.Cpu, OnnxElementType.Float));
        Assert.Equal(FusedAttention.GroupQueryAttention, FusedLlamaSession.DefaultAttention(InferenceDevice.Cpu, OnnxElementType.Float16));
        Assert.Equal(FusedAttention.GroupQueryAttention, FusedLlamaSession.DefaultAttention(InferenceDevice.Cuda, OnnxElementType.BFloat16));
        Assert.Equal(FusedAttention.GroupQueryAttention, FusedLlamaSession.DefaultAttention(InferenceDevice.Cuda, OnnxElementType.Float16));
        var config = TinyLlama.Config(tied: true);
        using var session = (FusedLlamaSession)ILlamaSession.Open(LlamaGraphKind.Fused, config, new LlamaGraphOptions(LastPositionLogitsOnly: true));
        Assert.Equal(FusedAttention.CachedAttention, session.Attention);
    }

    [Fact]
    public void CachedAttention_OutsideCpuFloat32_IsRefused()
    {
        var config = TinyLlama.Config(tied: true);
        var e = Assert.Throws<ArgumentException>(() => new FusedLlamaSession(config,
            new LlamaGraphOptions(OnnxElementType.Float16, LastPositionLogitsOnly: true), InferenceDevice.Cpu, "config.json", 0, 0, FusedAttention.CachedAttention));
        Assert.Contains("float32", e.Message);
        Assert.Throws<ArgumentException>(() => FusedLlamaGraphBuilder.Build(config,
            new LlamaGraphOptions(OnnxElementType.Float16, LastPositionLogitsOnly: true), FusedAttention.CachedAttention));
    }

    [Fact]
    public void FindIn_ALibraryThatDoesNotLoad_IsUnavailableNamingTheFile()
    {
        string dir = Directory.CreateTempSubdirectory("cycleqd-ortops-").FullName;
        try
        {
            string empty = Path.Combine(dir, "empty");
            Directory.CreateDirectory(empty);
            var (path, why) = CpuOperators.FindIn([empty]);
            Assert.Null(path);
            Assert.Contains("not found in " + empty, why);

            string broken = Path.Combine(dir, "broken");
            Directory.CreateDirectory(broken);
            File.WriteAllText(Path.Combine(broken, CpuOperators.LibraryName), "not an ELF file");
            (path, why) = CpuOperators.FindIn([empty, broken]);
            Assert.Null(path);
            Assert.Contains(Path.Combine(broken, CpuOperators.LibraryName) + " cannot be loaded", why);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void FindIn_TheBuiltLibrary_IsFoundAfterFoldersWithout()
    {
        CpuOperatorsRequirement.Require();
        string folder = Path.GetDirectoryName(CpuOperators.LibraryPath)!;
        var (path, why) = CpuOperators.FindIn([Path.GetTempPath(), folder]);
        Assert.Null(why);
        Assert.Equal(CpuOperators.LibraryPath, path);
    }

    [Theory]
    [InlineData(null, false)]
    [InlineData("", false)]
    [InlineData("cached", false)]
    [InlineData("group-query", true)]
    [InlineData(" Group-Query ", true)]
    public void CpuAttentionVariable_Values_PickTheOperator(string? value, bool groupQuery) =>
        Assert.Equal(groupQuery, FusedLlamaSession.KeepsGroupQueryAttention(value));

    [Fact]
    public void CpuAttentionVariable_AnythingElse_IsRefusedNamingTheVariableAndItsValues()
    {
        var e = Assert.Throws<ConfigurationException>(() => FusedLlamaSession.KeepsGroupQueryAttention("gqa"));
        Assert.Contains("CYCLEQD_CPU_ATTENTION=gqa", e.Message);
        Assert.Contains("group-query", e.Message);
        Assert.Contains("cached", e.Message);
    }
}
