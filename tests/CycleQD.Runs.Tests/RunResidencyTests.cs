using CycleQD.Cuda.Backend;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

/// <summary>A GPU run keeps its weight sets on the device when they fit beside the evaluator, else streams them from the host.</summary>
public sealed class RunResidencyTests
{
    private static ExperimentConfig Tiny(TempDir dir) => ExperimentConfig.Load(Experiments.Synthesized(dir, generations: 1, limit: 2));

    [Fact]
    public void Choose_ResidentWhenTheSetsFitTheirShare_StreamedOtherwise()
    {
        using var dir = new TempDir();
        var config = Tiny(dir);
        long set = RunResidency.BaseTensors(config).Sum(t => t.ByteLength);
        var need = CudaComputeBackend.ResidentNeed(RunResidency.BaseTensors(config), 3 + CudaComputeBackend.RunSetsBesidesExperts,
            config.Options.Mutation.SvdRank, config.Options.Mutation.Oversampling);
        Assert.Equal(7 * set, need.Sets * need.SetBytes);
        long card = (long)Math.Ceiling(need.TotalBytes / RunResidency.ResidentShare);
        Assert.Equal(WeightResidency.Resident, RunResidency.Choose(config, card));
        Assert.Equal(WeightResidency.Streamed, RunResidency.Choose(config, card - 1_000_000));
    }

    [Fact]
    public void StreamingPlan_ReservesTheKvCacheOfTheEvaluator_AndRefusesATooSmallCard()
    {
        using var dir = new TempDir();
        var config = Tiny(dir);
        var specs = RunResidency.BaseTensors(config);
        var plan = RunResidency.StreamingPlan(config, specs, 80L << 30);
        // tiny: 2 layers, 2 KV heads of 16, bf16: 2 · 2 · 2 · 16 · 2 bytes per token, for 64 sequences of 2,048 tokens.
        Assert.Equal(2L * 2 * 2 * 16 * 2 * 64 * 2048, plan.EvaluatorKvCacheBytes);
        Assert.Equal(specs.Sum(t => t.ByteLength), plan.ChildBytes);
        Assert.True(plan.Fits);
        var small = RunResidency.StreamingPlan(config, specs, plan.PeakBytes / 2);
        Assert.False(small.Fits);
        var e = Assert.Throws<CycleQD.Cuda.DeviceMemoryException>(() => small.EnsureFits("Test GPU"));
        Assert.Contains("Test GPU", e.Message);
    }

    [Fact]
    public void StreamingPlan_CountsTwoCachesForThePlainGraph_TheDefaultOrTheChosenOne()
    {
        using var dir = new TempDir();
        var config = Tiny(dir);
        var specs = RunResidency.BaseTensors(config);
        // bf16 weights: the fused graph by default, one KV buffer filled in place.
        Assert.Equal(Onnx.Graph.LlamaGraphKind.Fused, RunResidency.EvaluatorGraph(config, specs));
        long once = RunResidency.StreamingPlan(config, specs, 80L << 30).EvaluatorKvCacheBytes;
        var plain = config with { Evaluation = config.Evaluation with { Graph = Onnx.Graph.LlamaGraphKind.Plain } };
        Assert.Equal(Onnx.Graph.LlamaGraphKind.Plain, RunResidency.EvaluatorGraph(plain, specs));
        Assert.Equal(2 * once, RunResidency.StreamingPlan(plain, specs, 80L << 30).EvaluatorKvCacheBytes);
    }
}
