using CycleQD.Core.Compute;
using CycleQD.Cpu;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

public class ExpertSvdCacheTests
{
    private static InMemoryTensorSource Model(int seed)
    {
        var rng = new System.Random(seed);
        var src = new InMemoryTensorSource();
        foreach (var (name, shape) in new (string, long[])[] { ("layers.0.q.weight", [12, 8]), ("layers.0.input_norm.weight", [8]), ("layers.0.down.weight", [8, 10]) })
        {
            long n = shape.Aggregate(1L, (a, b) => a * b);
            var f = Enumerable.Range(0, (int)n).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
            var bytes = new byte[n * 2];
            DTypeConversion.FromSingle(f, DType.BF16, bytes);
            src.Add(new TensorSpec(name, DType.BF16, shape), bytes);
        }
        return src;
    }

    private static readonly MutationOptions Expert = new(Basis: MutationBasis.Expert);

    [Fact]
    public void LoadOrCompute_SecondCall_ReusesTheFile_AChangedExpertInvalidatesIt()
    {
        using var dir = new TempDir();
        using var be = new CpuComputeBackend();
        using var b = be.Upload(Model(1));
        using var e1 = be.Upload(Model(2));
        using var e2 = be.Upload(Model(3));
        var lines = new List<string>();
        var first = ExpertSvdCache.LoadOrCompute(dir.Path, be, b, [new("tiny/db", e1)], Expert, lines.Add);
        string path = ExpertSvdCache.PathOf(dir.Path, "tiny/db");
        Assert.EndsWith(Path.Combine("state", "expert-svd", "tiny_db.safetensors"), path);
        Assert.True(File.Exists(path));
        var written = File.GetLastWriteTimeUtc(path);
        Assert.Contains(lines, l => l.Contains("computing", StringComparison.Ordinal));

        lines.Clear();
        var again = ExpertSvdCache.LoadOrCompute(dir.Path, be, b, [new("tiny/db", e1)], Expert, lines.Add);
        Assert.Contains(lines, l => l.Contains("reusing", StringComparison.Ordinal));
        Assert.Equal(written, File.GetLastWriteTimeUtc(path));
        Assert.Equal(first["tiny/db"][0]!.S, again["tiny/db"][0]!.S);
        Assert.Equal(first["tiny/db"][2]!.Vt, again["tiny/db"][2]!.Vt);
        Assert.Null(again["tiny/db"][1]);

        lines.Clear();
        var changed = ExpertSvdCache.LoadOrCompute(dir.Path, be, b, [new("tiny/db", e2)], Expert, lines.Add);
        Assert.Contains(lines, l => l.Contains("computing", StringComparison.Ordinal));
        Assert.NotEqual(first["tiny/db"][0]!.S, changed["tiny/db"][0]!.S);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(ExpertSvdCache.ContentHash(be, e2), file.Metadata["expert_sha256"]);
        Assert.Equal(ExpertSvdCache.ContentHash(be, b), file.Metadata["base_sha256"]);
    }

    [Fact]
    public void LoadOrCompute_OtherRankOrDamagedFile_Recomputes()
    {
        using var dir = new TempDir();
        using var be = new CpuComputeBackend();
        using var b = be.Upload(Model(1));
        using var e = be.Upload(Model(2));
        ExpertSvdCache.LoadOrCompute(dir.Path, be, b, [new("a", e)], Expert, null);
        var lines = new List<string>();
        var ranked = ExpertSvdCache.LoadOrCompute(dir.Path, be, b, [new("a", e)], Expert with { SvdRank = 2 }, lines.Add);
        Assert.Contains(lines, l => l.Contains("computing", StringComparison.Ordinal));
        Assert.Equal(2, ranked["a"][0]!.Rank);

        File.WriteAllBytes(ExpertSvdCache.PathOf(dir.Path, "a"), [1, 2, 3]);
        lines.Clear();
        var fresh = ExpertSvdCache.LoadOrCompute(dir.Path, be, b, [new("a", e)], Expert with { SvdRank = 2 }, lines.Add);
        Assert.Contains(lines, l => l.Contains("computing", StringComparison.Ordinal));
        Assert.Equal(ranked["a"][0]!.S, fresh["a"][0]!.S);
    }

    [Fact]
    public void Resume_BasisExpert_HalfwayThenToTarget_IdenticalToStraightRun_AndReusesTheSvd()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic(mutation: "svd, basis: expert, svd_scale_max: 0.5"));
        ResumeTests.RunTo(exp, dir.File("straight"), 18);
        ResumeTests.RunTo(exp, dir.File("split"), 9);
        string cache = ExpertSvdCache.PathOf(dir.File("split"), "a");
        Assert.True(File.Exists(cache));
        var written = File.GetLastWriteTimeUtc(cache);
        ResumeTests.ResumeTo(dir.File("split"), 18);
        Assert.Equal(written, File.GetLastWriteTimeUtc(cache));
        ResumeTests.AssertSameRun(dir.File("straight"), dir.File("split"), 18);
    }

    [Fact]
    public void Run_BasisExpertVsChild_DifferentArchives()
    {
        using var dir = new TempDir();
        string expert = Experiments.Write(dir, "e.yaml", Experiments.Synthetic(mutation: "svd, basis: expert"));
        string child = Experiments.Write(dir, "c.yaml", Experiments.Synthetic(mutation: "svd, basis: child"));
        ResumeTests.RunTo(expert, dir.File("e"), 12);
        ResumeTests.RunTo(child, dir.File("c"), 12);
        Assert.NotEqual(ResumeTests.MetricsWithoutTiming(dir.File("e")), ResumeTests.MetricsWithoutTiming(dir.File("c")));
    }
}
