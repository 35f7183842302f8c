using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;

namespace CycleQD.Onnx.Tests;

/// <summary>The graph comparison behind `cycleqd generate check`: it passes the fused graph and catches a wrong one.</summary>
public sealed class GraphComparisonTests
{
    private static readonly int[][] Prompts = [[4, 8, 15, 16, 23, 42], [7, 7], [59, 1, 2, 3]];

    [Theory]
    [InlineData(8)]
    [InlineData(16)]
    public void FusedAgainstPlain_StaysWithinTheFloat32Tolerance_EveryStep(int headDim)
    {
        var config = TinyLlama.Config(tied: false, TinyLlama.Llama3Scaling, headDim);
        var options = new LlamaGraphOptions(LastPositionLogitsOnly: true);
        using var plain = ILlamaSession.Open(LlamaGraphKind.Plain, config, options);
        using var fused = ILlamaSession.Open(LlamaGraphKind.Fused, config, options);
        using var weights = LlamaWeights.FromArrays(config, TinyLlama.Weights(config, seed: 3), "random");
        var steps = GraphComparison.Run(plain, fused, weights, Prompts, 5);
        Assert.Equal([0, 1, 2, 3, 4, 5], steps.Select(s => s.Step));
        Assert.All(steps, s => Assert.InRange(s.WorstRelativeError, 0, GraphComparison.Tolerance(OnnxElementType.Float)));
        Assert.All(steps, s => Assert.Equal(Prompts.Length, s.SameGreedyRows));
    }

    [Fact]
    public void AGraphThatComputesSomethingElse_IsFarBeyondTheTolerance()
    {
        // The same fused graph with the rotary embedding's base changed: positions are turned wrongly.
        var config = TinyLlama.Config(tied: false, headDim: 16);
        var options = new LlamaGraphOptions(LastPositionLogitsOnly: true);
        using var plain = ILlamaSession.Open(LlamaGraphKind.Plain, config, options);
        using var wrong = ILlamaSession.Open(LlamaGraphKind.Fused, config with { RopeTheta = 7.0 }, options);
        using var weights = LlamaWeights.FromArrays(config, TinyLlama.Weights(config, seed: 3), "random");
        Assert.Throws<ArgumentException>(() => GraphComparison.Run(plain, wrong, weights, Prompts, 3));
        using var wrongSameConfig = new WrongRotary(wrong, config);
        var steps = GraphComparison.Run(plain, wrongSameConfig, weights, Prompts, 3);
        Assert.True(steps.Max(s => s.WorstRelativeError) > 10 * GraphComparison.Tolerance(OnnxElementType.Float16));
    }

    [Fact]
    public void RelativeDifference_IsTheL2Ratio_AndNaNPassesNoTolerance()
    {
        Assert.Equal(0.5, GraphComparison.RelativeDifference([3f, 4f + 2.5f], [3f, 4f]), 12);
        Assert.Equal(0, GraphComparison.RelativeDifference([0f, 0f], [0f, 0f]));
        Assert.Equal(double.PositiveInfinity, GraphComparison.RelativeDifference([1f], [0f]));
        Assert.False(GraphComparison.RelativeDifference([float.NaN, 1f], [1f, 1f]) <= GraphComparison.Tolerance(OnnxElementType.BFloat16));
        Assert.Throws<ArgumentException>(() => GraphComparison.RelativeDifference([1f], [1f, 2f]));
    }

    /// <summary>A session built for another rope base that reports the compared config: a graph that computes the wrong thing.</summary>
    private sealed class WrongRotary(ILlamaSession inner, Tensors.LlamaConfig reported) : ILlamaSession
    {
        public Tensors.LlamaConfig Config => reported;
        public LlamaGraphOptions Options => inner.Options;
        public LlamaGraphKind Graph => inner.Graph;
        public InferenceDevice Device => inner.Device;
        public IBatchDecoder StartBatch(LlamaWeights weights, int batch, int capacity) => inner.StartBatch(weights, batch, capacity);
        public void Dispose() { }
    }
}
