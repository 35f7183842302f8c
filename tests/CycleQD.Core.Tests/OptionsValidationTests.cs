using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Core.Sampling;

namespace CycleQD.Core.Tests;

public class OptionsValidationTests
{
    private static CycleQDOptions Valid() => new() { Tasks = ["a", "b"] };

    [Fact]
    public void Validate_DefaultOptions_Pass() => Valid().Validate();

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void Validate_BadOption_OneClearError(string expectedFragment, CycleQDOptions options)
    {
        var e = Assert.Throws<ConfigurationException>(options.Validate);
        Assert.Contains(expectedFragment, e.Message);
    }

    public static TheoryData<string, CycleQDOptions> BadOptions() => new()
    {
        { "archive.bounds: unknown task 'c'", Valid() with { Bounds = new Dictionary<string, ScoreBounds> { ["c"] = new(0, 1) } } },
        { "archive.bounds.a: lower bound 0.5 must be below upper bound 0.5", Valid() with { Bounds = new Dictionary<string, ScoreBounds> { ["a"] = new(0.5, 0.5) } } },
        { "archive.bins = 0", Valid() with { Bins = 0 } },
        { "crossover.std = -0.1", Valid() with { Crossover = new CrossoverOptions(1.0, -0.1) } },
        { "mutation.sigma = -1", Valid() with { Mutation = new MutationOptions(MutationKind.Gaussian, GaussianStd: -1) } },
        { "mutation.svd_scale_max = -0.2", Valid() with { Mutation = new MutationOptions(SvdScaleMax: -0.2) } },
        { "in_flight = 0", Valid() with { InFlight = 0 } },
        { "tasks: 'a' is listed twice", Valid() with { Tasks = ["a", "a"] } },
        { "alpha_low", Valid() with { Sampling = new SamplingOptions(AlphaLow: 0.9, AlphaHigh: 0.8) } },
    };

    [Fact]
    public void QualityTaskOf_Interval_CyclesThroughTasks()
    {
        var o = new CycleQDOptions { Tasks = ["a", "b", "c"], QualityTaskInterval = 2 };
        Assert.Equal([0, 0, 1, 1, 2, 2, 0], Enumerable.Range(0, 7).Select(o.QualityTaskOf));
    }

    [Fact]
    public void MutationApplies_EmbeddingsAndVectors_FollowSwitches()
    {
        var o = new MutationOptions();
        Assert.True(o.Applies(new TensorSpec("model.layers.0.mlp.up_proj.weight", Tensors.DType.BF16, [8, 4])));
        Assert.False(o.Applies(new TensorSpec("model.norm.weight", Tensors.DType.BF16, [8])));
        Assert.False(o.Applies(new TensorSpec("model.embed_tokens.weight", Tensors.DType.BF16, [8, 4])));
        Assert.True((o with { IncludeEmbeddings = true }).Applies(new TensorSpec("lm_head.weight", Tensors.DType.BF16, [8, 4])));
    }
}
