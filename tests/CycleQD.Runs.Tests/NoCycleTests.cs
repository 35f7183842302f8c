using System.Text.Json.Nodes;
using CycleQD.Core;
using CycleQD.Core.Archives;
using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Core.Synthetic;
using CycleQD.Cpu;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

/// <summary>
/// The "without the cycle" ablation (archive.cycle: false): one archive whose quality is the mean of
/// the tasks' scores and whose behaviour characteristics are all the tasks, through the engine, the
/// run directory, resume and the final candidates.
/// </summary>
public sealed class NoCycleTests : IDisposable
{
    private static readonly string[] Tasks = ["a", "b", "c"];
    private readonly SyntheticEngineInputs _inputs = new(Tasks, new SyntheticProblemOptions(Layers: 2, Rows: 24, Cols: 16, DType: DType.BF16, Seed: 11));

    public void Dispose() => _inputs.Dispose();

    private static CycleQDOptions Options(bool cycle) => new()
    {
        Tasks = Tasks,
        Cycle = cycle,
        Bins = 4,
        Seed = 77,
        Crossover = new CrossoverOptions(1.0, 0.3),
        Mutation = new MutationOptions(MutationKind.Svd, SvdScaleMax: 0.5),
    };

    [Fact]
    public async Task Engine_WithoutTheCycle_KeepsOneMeanArchiveAndDrawsEveryParentFromIt()
    {
        var log = new RecordingSink();
        using (var engine = new CycleQDEngine(Options(cycle: false), _inputs.Backend, _inputs.Base, _inputs.Experts, _inputs.Problem, new InMemoryEliteStore(), log))
        {
            await engine.InitializeAsync(TestContext.Current.CancellationToken);
            await engine.RunAsync(20, TestContext.Current.CancellationToken);
            var a = Assert.Single(engine.Archives);
            Assert.True(a.IsMean);
            foreach (var (cell, e) in a.Cells)
                Assert.Equal(cell, a.CellOf(e.Scores));
            // The archive's quality is the mean: its QD score is the sum of the elites' mean scores.
            Assert.Equal(a.Cells.Values.Sum(e => e.Scores.Average()), a.QdScore, 12);
        }
        Assert.Equal(20, log.Records.Count);
        Assert.All(log.Records, r =>
        {
            Assert.Equal(Archive.MeanTask, r.QualityTask);
            var s = Assert.Single(r.Archives);
            Assert.Equal(Archive.MeanTask, s.Task);
            Assert.All(r.Insertions, i => Assert.Equal(Archive.MeanTask, i.Task));
        });
        // Every parent is an elite of the mean archive as it stood when the plan was drawn (D = 1: after the previous generation).
        for (int g = 0; g < log.Records.Count; g++)
        {
            var before = log.States[g].Archives.Single().Cells.Select(c => c.Elite.Id).ToHashSet();
            Assert.All(log.Records[g].Parents, p => Assert.Contains(p, before));
        }
        // Some child made it into the archive (the synthetic problem rewards merging), so the ablation is not a no-op.
        Assert.Contains(log.Records, r => r.ChildId != null);
    }

    [Fact]
    public async Task Engine_WithoutTheCycle_DiffersFromTheCycledRunOfTheSameSeed()
    {
        var cycled = new RecordingSink();
        var flat = new RecordingSink();
        foreach (var (cycle, log) in new[] { (true, cycled), (false, flat) })
        {
            using var engine = new CycleQDEngine(Options(cycle), _inputs.Backend, _inputs.Base, _inputs.Experts, _inputs.Problem, new InMemoryEliteStore(), log);
            await engine.InitializeAsync(TestContext.Current.CancellationToken);
            await engine.RunAsync(12, TestContext.Current.CancellationToken);
        }
        Assert.Equal([0, 1, 2, 0, 1, 2], cycled.Records.Take(6).Select(r => r.QualityTask));
        Assert.Equal(3, cycled.States[^1].Archives.Count);
        Assert.Single(flat.States[^1].Archives);
    }

    [Fact]
    public async Task Restore_ACheckpointOfTheOtherKind_IsRefusedNamingTheSetting()
    {
        var cycled = new RecordingSink();
        using (var engine = new CycleQDEngine(Options(cycle: true), _inputs.Backend, _inputs.Base, _inputs.Experts, _inputs.Problem, new InMemoryEliteStore(), cycled))
            await engine.InitializeAsync(TestContext.Current.CancellationToken);
        var flat = new RecordingSink();
        using (var engine = new CycleQDEngine(Options(cycle: false), _inputs.Backend, _inputs.Base, _inputs.Experts, _inputs.Problem, new InMemoryEliteStore(), flat))
            await engine.InitializeAsync(TestContext.Current.CancellationToken);

        using (var engine = new CycleQDEngine(Options(cycle: false), _inputs.Backend, _inputs.Base, _inputs.Experts, _inputs.Problem, new InMemoryEliteStore()))
        {
            var e = Assert.Throws<ConfigurationException>(() => engine.Restore(cycled.States[0]));
            Assert.Contains("archive.cycle: false", e.Message);
        }
        using (var engine = new CycleQDEngine(Options(cycle: true), _inputs.Backend, _inputs.Base, _inputs.Experts, _inputs.Problem, new InMemoryEliteStore()))
        {
            var e = Assert.Throws<ConfigurationException>(() => engine.Restore(flat.States[0]));
            Assert.Contains("archive.cycle: false", e.Message);
        }
    }

    [Fact]
    public void Options_WithoutTheCycle_RefuseTheExpertBasisAndATaskNamedMean()
    {
        var basis = Options(cycle: false) with { Mutation = new MutationOptions(MutationKind.Svd, Basis: MutationBasis.Expert) };
        Assert.Contains("mutation.basis: expert", Assert.Throws<ConfigurationException>(basis.Validate).Message);
        var named = Options(cycle: false) with { Tasks = ["a", "mean"] };
        Assert.Contains("'mean'", Assert.Throws<ConfigurationException>(named.Validate).Message);
        // G^N cells: 15 bins on 3 tasks is 3,375 cells without the cycle (225 with it); 1,000 bins on 2 tasks is 10⁶ either way.
        Assert.Equal(3375, Archive.Mean([new(0, 1, 15), new(0, 1, 15), new(0, 1, 15)]).CellCount);
        var big = new CycleQDOptions { Tasks = ["a", "b", "c"], Cycle = false, Bins = 101 };
        Assert.Contains("without the cycle", Assert.Throws<ConfigurationException>(big.Validate).Message);
        (big with { Cycle = true }).Validate();
    }

    [Fact]
    public void RunDirectory_WithoutTheCycle_WritesTheMeanArchiveAndResumesExactly()
    {
        using var dir = new TempDir();
        string text = Experiments.Synthetic().Replace("archive: { bins: 6 }", "archive: { bins: 6, cycle: false }", StringComparison.Ordinal);
        Assert.Contains("cycle: false", text);
        string exp = Experiments.Write(dir, "exp.yaml", text);
        ResumeTests.RunTo(exp, dir.File("straight"), 16);
        ResumeTests.RunTo(exp, dir.File("split"), 8);
        ResumeTests.ResumeTo(dir.File("split"), 16);
        ResumeTests.AssertSameRun(dir.File("straight"), dir.File("split"), 16);

        var archive = JsonNode.Parse(File.ReadAllText(dir.File("straight/archive.json")))!;
        var only = Assert.Single(archive["archives"]!.AsArray())!;
        Assert.Equal("mean", only["task"]!.GetValue<string>());
        Assert.Equal(["a", "b", "c"], only["bc"]!.AsArray().Select(b => b!["task"]!.GetValue<string>()));
        foreach (var c in only["cells"]!.AsArray())
        {
            var scores = c!["scores"]!.AsObject().Select(kv => kv.Value!.GetValue<double>()).ToArray();
            Assert.Equal(scores.Sum() / 3, c["quality"]!.GetValue<double>(), 12);
        }
        foreach (string line in File.ReadAllLines(dir.File("straight/metrics.jsonl")))
        {
            var m = JsonNode.Parse(line)!;
            Assert.Equal("mean", m["quality_task"]!.GetValue<string>());
            Assert.Equal(["mean"], m["qd_score"]!.AsObject().Select(kv => kv.Key));
            Assert.All(m["inserted"]!.AsArray(), i => Assert.Equal("mean", i!["archive"]!.GetValue<string>()));
        }
        // A run directory started without the cycle cannot be continued with it (its experiment file edited).
        string copy = dir.File("split/experiment.yaml");
        File.WriteAllText(copy, File.ReadAllText(copy).Replace(", cycle: false", "", StringComparison.Ordinal));
        var e = Assert.ThrowsAny<Exception>(() => ResumeTests.ResumeTo(dir.File("split"), 20));
        Assert.Contains("cycle", e.Message);
    }

    [Fact]
    public async Task AttachedLogger_WithoutTheCycle_NamesTheMeanArchiveAsTheQuality()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml",
            Experiments.Synthetic(generations: 3).Replace("archive: { bins: 6 }", "archive: { bins: 6, cycle: false }", StringComparison.Ordinal));
        var messages = new List<string>();
        using (var s = RunSession.Start(exp, dir.File("run"), 3, null))
        {
            using var attached = RunLogging.Attach(s, new ListLogger(messages));
            await s.InitializeAsync(TestContext.Current.CancellationToken);
            Assert.True(await s.RunAsync(TestContext.Current.CancellationToken));
        }
        var generations = messages.Where(m => m.StartsWith("generation ", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, generations.Count);
        Assert.All(generations, m => Assert.Contains("quality task mean,", m));
    }

    private sealed class ListLogger(List<string> messages) : Microsoft.Extensions.Logging.ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception,
            Func<TState, Exception?, string> formatter) => messages.Add(formatter(state, exception));
    }

    [Fact]
    public void FinalCandidates_WithoutTheCycle_TakeEachTasksBestFromTheMeanArchive()
    {
        BinSpec[] bins = [new(0, 1, 2), new(0, 1, 2), new(0, 1, 2)];
        var mean = Archive.Mean(bins);
        var views = Final.FinalCandidates.PerTask([mean], 3);
        Assert.Equal([0, 1, 2], views.Select(v => v.Task));
        Assert.All(views, v => Assert.Same(mean, v.Archive));
        // With the cycle, each task keeps its own archive.
        var own = Enumerable.Range(0, 3).Select(t => new Archive(t, bins)).ToArray();
        Assert.Equal(own, Final.FinalCandidates.PerTask(own, 3).Select(v => v.Archive));
    }
}
