using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Generation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

/// <summary>
/// Generation in lanes (several CPU sessions decoding batches side by side, <see cref="LlamaModel.Lanes"/>):
/// how requests are cut into batches, how many lanes a model gets, and that lanes change nothing in the output.
/// </summary>
public sealed class GenerationLaneTests
{
    [Theory]
    [InlineData(64, 64, 1, new[] { 64 })]
    [InlineData(64, 64, 2, new[] { 32, 32 })]
    [InlineData(200, 64, 1, new[] { 50, 50, 50, 50 })]
    [InlineData(200, 64, 3, new[] { 34, 34, 33, 33, 33, 33 })]
    [InlineData(3, 64, 4, new[] { 1, 1, 1 })]
    [InlineData(1, 1, 2, new[] { 1 })]
    [InlineData(7, 2, 2, new[] { 2, 2, 2, 1 })]
    [InlineData(0, 8, 2, new int[0])]
    public void Batches_AreFewNearEqualAndAMultipleOfTheLanes(int requests, int maxBatch, int lanes, int[] sizes)
    {
        // Shuffled ids: the batches must keep the given order (shortest prompts first), only cut it.
        var order = Enumerable.Range(0, requests).Select(i => (i * 37 + 11) % Math.Max(1, requests)).Distinct().ToArray();
        Assert.Equal(requests, order.Length);
        var batches = LlamaGenerator.Batches(order, maxBatch, lanes);
        Assert.Equal(sizes, batches.Select(b => b.Length).ToArray());
        Assert.Equal(order, batches.SelectMany(b => b).ToArray());
        Assert.All(batches, b => Assert.InRange(b.Length, 1, maxBatch));
    }

    [Theory]
    // A small CPU model with the default threads: one lane per core (at most 8), one thread each.
    [InlineData(InferenceDevice.Cpu, 0, 0, 1L << 20, 2, 2, 1)]
    [InlineData(InferenceDevice.Cpu, 0, 0, 1L << 20, 1, 1, 0)]
    [InlineData(InferenceDevice.Cpu, 0, 0, 1L << 20, 16, 8, 1)]
    [InlineData(InferenceDevice.Cpu, 0, 0, 1L << 20, 3, 3, 1)]
    // A larger model, or threads asked for: one lane.
    [InlineData(InferenceDevice.Cpu, 0, 0, (32L << 20) + 1, 16, 1, 0)]
    [InlineData(InferenceDevice.Cpu, 0, 2, 1L << 20, 16, 1, 2)]
    // Lanes asked for: the cores shared among them unless threads are asked for too.
    [InlineData(InferenceDevice.Cpu, 3, 0, 1L << 40, 16, 3, 5)]
    [InlineData(InferenceDevice.Cpu, 3, 2, 1L << 20, 16, 3, 2)]
    [InlineData(InferenceDevice.Cpu, 4, 0, 1L << 20, 2, 4, 1)]
    [InlineData(InferenceDevice.Cpu, 1, 0, 1L << 20, 16, 1, 0)]
    // CUDA runs one session.
    [InlineData(InferenceDevice.Cuda, 0, 0, 1L << 20, 16, 1, 0)]
    public void LanePlan_PicksLanesForSmallCpuModelsOnly(InferenceDevice device, int lanes, int threads, long weightBytes, int cores, int expectLanes, int expectThreads)
    {
        Assert.Equal((expectLanes, expectThreads), LlamaModel.LanePlan(device, lanes, threads, weightBytes, cores));
    }

    [Fact]
    public void Open_RefusesSeveralLanesOnCuda_AndNegativeLanes()
    {
        // Refused before anything is opened: no GPU is needed to see it.
        var cuda = Assert.Throws<ArgumentOutOfRangeException>(() => LlamaModel.Open(TestPaths.Stories260K, InferenceDevice.Cuda, lanes: 2));
        Assert.Contains("CPU sessions", cuda.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => LlamaModel.Open(TestPaths.Stories260K, lanes: -1));
    }

    private static List<GenerationRequest> MixedRequests() =>
    [
        new("Once upon a time", 30),
        new("", 25),
        new("The cat sat on the mat.", 0),
        new("Lily and Tim went to the park. They", 40, StopStrings: ["."]),
        new("One day, a little dog named Max found a big red ball!", 20, Temperature: 0.8, TopP: 0.9, Seed: 7),
        new("Tom had a red car.", 35, Temperature: 1.0, Seed: 12345),
        new("The sun was hot.", 10, MaxModelLen: 12),
        new("A very long prompt that does not fit the model length at all, said the cat to the dog.", 10, MaxModelLen: 4),
        new("Café naïve “quotes” — 日本", 15),
        new("  two  spaces\tand a tab\nnew line 12345", 22),
        new("Ben and Sue", 18, StopStrings: ["Sue", "the"], StopMatch: StopStringMatch.FirstOccurrence),
    ];

    [Theory]
    [InlineData(LlamaGraphKind.Fused)]
    [InlineData(LlamaGraphKind.Plain)]
    public void Lanes_GiveTheOutputOfOneLane(LlamaGraphKind graph)
    {
        var ct = TestContext.Current.CancellationToken;
        using var one = LlamaModel.Open(TestPaths.Stories260K, maxBatch: 4, graph: graph, lanes: 1);
        using var three = LlamaModel.Open(TestPaths.Stories260K, maxBatch: 4, graph: graph, lanes: 3);
        Assert.Equal(1, one.Lanes);
        Assert.Equal(3, three.Lanes);
        Assert.Equal(3, three.Generator.Lanes);
        var requests = MixedRequests();
        var expected = one.Generator.Generate(requests, ct);
        // Twice: the lanes' sessions and threads are reused from call to call.
        for (int round = 0; round < 2; round++)
        {
            var actual = three.Generator.Generate(requests, ct);
            for (int i = 0; i < requests.Count; i++)
            {
                Assert.Equal(expected[i].TokenIds, actual[i].TokenIds);
                Assert.Equal(expected[i].Text, actual[i].Text);
                Assert.Equal(expected[i].Finish, actual[i].Finish);
            }
            Assert.Equal(one.Generator.LastStats!.GeneratedTokens, three.Generator.LastStats!.GeneratedTokens);
            Assert.Equal(requests.Count, three.Generator.LastStats.Sequences);
        }
        // A generator for other weights (a run's candidates) decodes in the same lanes.
        using var file = three.Folder.OpenWeights();
        using var weights = LlamaWeights.FromSafetensors(file, three.Folder.Config);
        var other = three.CreateGenerator(weights);
        Assert.Equal(3, other.Lanes);
        var again = other.Generate(requests, ct);
        Assert.Equal(expected.Select(r => r.Text), again.Select(r => r.Text));
    }

    [Fact]
    public void Lanes_Cancelled_ThrowCancellationNotAnAggregate()
    {
        using var model = LlamaModel.Open(TestPaths.Stories260K, maxBatch: 2, lanes: 2);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var requests = Enumerable.Range(0, 8).Select(i => new GenerationRequest("Once upon a time", 20)).ToList();
        Assert.ThrowsAny<OperationCanceledException>(() => model.Generator.Generate(requests, cts.Token));
    }

    [Fact]
    public void Lanes_AFailingBatch_ReportsItsOwnError()
    {
        // Weights of the right names but another element type: every lane's batch refuses them; the
        // error that comes out is the decoder's, not a wrapper's.
        using var model = LlamaModel.Open(TestPaths.Stories260K, maxBatch: 2, lanes: 2);
        using var file = model.Folder.OpenWeights();
        using var half = LlamaWeights.FromSafetensors(file, model.Folder.Config, OnnxElementType.Float16);
        var generator = model.CreateGenerator(half);
        var requests = Enumerable.Range(0, 6).Select(i => new GenerationRequest("Once upon a time", 5)).ToList();
        var e = Assert.Throws<ArgumentException>(() => generator.Generate(requests, TestContext.Current.CancellationToken));
        Assert.Contains("Float16", e.Message);
    }

    /// <summary>A lane over a real session that counts the steps its batches run, or fails to start any.</summary>
    private sealed class WatchedLane(ILlamaSession inner, bool fails) : ILlamaSession
    {
        public int Steps;
        public LlamaConfig Config => inner.Config;
        public LlamaGraphOptions Options => inner.Options;
        public LlamaGraphKind Graph => inner.Graph;
        public InferenceDevice Device => inner.Device;
        public IBatchDecoder StartBatch(LlamaWeights weights, int batch, int capacity) =>
            fails ? throw new InvalidOperationException("this lane is broken") : new Counted(inner.StartBatch(weights, batch, capacity), this);
        public void Dispose() { }

        private sealed class Counted(IBatchDecoder inner, WatchedLane lane) : IBatchDecoder
        {
            public int Rows => inner.Rows;
            public float[] Prefill(IReadOnlyList<int[]> prompts) { Interlocked.Increment(ref lane.Steps); return inner.Prefill(prompts); }
            public float[] Decode(ReadOnlySpan<int> tokens) { Interlocked.Increment(ref lane.Steps); return inner.Decode(tokens); }
            public void KeepRows(IReadOnlyList<int> rows) => inner.KeepRows(rows);
            public void Dispose() => inner.Dispose();
        }
    }

    [Fact]
    public void Lanes_OneFailing_ItsErrorComesOut_AndStopsTheOthers()
    {
        using var model = LlamaModel.Open(TestPaths.Stories260K, lanes: 1);
        using var second = ILlamaSession.Open(model.Session.Graph, model.Folder.Config, model.Session.Options);
        var good = new WatchedLane(model.Session, fails: false);
        var alsoGood = new WatchedLane(second, fails: false);
        var broken = new WatchedLane(model.Session, fails: true);
        var generator = LlamaGenerator.OnLanes([good, alsoGood, broken], model.Weights, model.Tokenizer, [], maxBatch: 4);
        // No EOS: every sequence would take its 400 tokens, 400 steps per batch, two batches per lane.
        var requests = Enumerable.Range(0, 24).Select(i => new GenerationRequest("Lily and Tim went to the park. They", 400)).ToList();
        var e = Assert.Throws<InvalidOperationException>(() => generator.Generate(requests, TestContext.Current.CancellationToken));
        Assert.Equal("this lane is broken", e.Message);
        // The good lanes stopped within steps of the failure instead of running their 800 each.
        Assert.InRange(good.Steps + alsoGood.Steps, 0, 400);
    }

    [Fact]
    public void OnLanes_RefusesSessionsOfDifferentGraphs()
    {
        using var model = LlamaModel.Open(TestPaths.Stories260K, lanes: 1);
        using var plain = ILlamaSession.Open(LlamaGraphKind.Plain, model.Folder.Config, new LlamaGraphOptions(LastPositionLogitsOnly: true));
        var e = Assert.Throws<ArgumentException>(() => LlamaGenerator.OnLanes([model.Session, plain], model.Weights, model.Tokenizer, [2]));
        Assert.Contains("one architecture, graph", e.Message);
        Assert.Throws<ArgumentException>(() => LlamaGenerator.OnLanes([], model.Weights, model.Tokenizer, [2]));
    }
}
