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
        { "archive.bins: 1001 bins on each of 2 behaviour axes (3 tasks) make 1.002E+06 cells per archive, too many", Valid() with { Tasks = ["a", "b", "c"], Bins = 1001 } },
        { "archive.bins: 1000001 bins on each of 1 behaviour axes (2 tasks)", Valid() with { Bins = 1_000_001 } },
        { "archive.bins: 100000 bins on each of 3 behaviour axes (4 tasks) make 1E+15", Valid() with { Tasks = ["a", "b", "c", "d"], Bins = 100_000 } },
        { "crossover: mean 1 and std 2.2E+37 are too large", Valid() with { Crossover = new CrossoverOptions(1.0, 2.2e37) } },
        { "crossover: mean 2E+38 and std 0 are too large", Valid() with { Crossover = new CrossoverOptions(2e38, 0) } },
    };

    [Fact]
    public void Validate_LargestArchiveAndCrossoverThatFit_Pass()
    {
        (Valid() with { Tasks = ["a", "b", "c"], Bins = 1000 }).Validate();
        (Valid() with { Bins = CycleQDOptions.MaxCellsPerArchive }).Validate();
        (Valid() with { Crossover = new CrossoverOptions(1.0, 2.1e37) }).Validate();
    }

    [Theory]
    [InlineData(4, 100_000, 100_000, "model.synthetic: layers 4 × (rows 100000 × cols 100000 + 100000) = 4E+10 parameters, too many: at most 134,217,728")]
    [InlineData(int.MaxValue, int.MaxValue, int.MaxValue, "model.synthetic: layers 2147483647 × (rows 2147483647 × cols 2147483647 + 2147483647) = 9.904E+27 parameters")]
    [InlineData(8, 4096, 4097, "= 1.343E+08 parameters, too many")]
    public void SyntheticSize_TooLarge_NamesTheSettings(int layers, int rows, int cols, string expected)
    {
        var e = Assert.Throws<ConfigurationException>(new Synthetic.SyntheticProblemOptions(layers, rows, cols).Validate);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void SyntheticSize_AtTheLimit_Passes() => new Synthetic.SyntheticProblemOptions(8, 4096, 4095).Validate();

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
