using System.Text.Json;
using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Core.Synthetic;
using CycleQD.Cpu;
using CycleQD.Tensors;

namespace CycleQD.Runs.Tests;

/// <summary>
/// The ask/tell face of the engine: a host that scores each asked child with the synthetic problem
/// and tells the scores back must get the run the push loop gets from the same evaluator, and
/// checkpoints move between the two.
/// </summary>
public sealed class AskTellTests : IDisposable
{
    private static readonly string[] Tasks = ["a", "b", "c"];
    private readonly SyntheticEngineInputs _inputs = new(Tasks, new SyntheticProblemOptions(Layers: 2, Rows: 24, Cols: 16, DType: DType.BF16, Seed: 11));

    public void Dispose() => _inputs.Dispose();

    private static CycleQDOptions Options(int inFlight) => new()
    {
        Tasks = Tasks,
        Bins = 4,
        Seed = 2024,
        InFlight = inFlight,
        Crossover = new CrossoverOptions(1.0, 0.3),
        Mutation = new MutationOptions(MutationKind.Svd, SvdScaleMax: 0.5),
    };

    private static string Json(RunState state) => JsonSerializer.Serialize(state);

    // The decisions of a record, without its wall-clock timing.
    private static string Decisions(GenerationRecord r) =>
        JsonSerializer.Serialize(new { r.Generation, r.QualityTask, r.Parents, r.Weights, r.Scores, r.ChildId, r.Insertions, r.Archives, r.NonFinite });

    private RecordingSink PushRun(CycleQDOptions options, int generations)
    {
        var log = new RecordingSink();
        using var engine = new CycleQDEngine(options, _inputs.Backend, _inputs.Base, _inputs.Experts, _inputs.Problem, new InMemoryEliteStore(), log);
        engine.InitializeAsync(TestContext.Current.CancellationToken).GetAwaiter().GetResult();
        engine.RunAsync(generations, TestContext.Current.CancellationToken).GetAwaiter().GetResult();
        return log;
    }

    private double[] Score(IWeightSet w) => _inputs.Problem.EvaluateAsync(_inputs.Backend, w, TestContext.Current.CancellationToken).GetAwaiter().GetResult();

    private CycleQDEngine AskTellEngine(CycleQDOptions options, IEliteStore store, RecordingSink log) =>
        new(options, _inputs.Backend, _inputs.Base, _inputs.Experts, store, log);

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void AskTell_SyntheticScoresToldInOrder_GiveThePushRunsStatesAndRecords(int inFlight)
    {
        const int generations = 9;
        var push = PushRun(Options(inFlight), generations);

        var log = new RecordingSink();
        using var engine = AskTellEngine(Options(inFlight), new InMemoryEliteStore(), log);
        engine.Initialize(_inputs.Experts.Select(e => (IReadOnlyList<double>)Score(e.Weights)).ToList());
        while (engine.NextGeneration < generations)
        {
            var c = engine.Ask();
            Assert.Equal(engine.NextGeneration, c.Generation);
            Assert.Equal(new MutationKey(MutationKind.Svd, 2024, (uint)c.Generation), c.Mutation);
            var committed = engine.Tell(c.Id, Score(c.Weights));
            Assert.Equal(c.Generation, Assert.Single(committed).Generation);
        }

        Assert.Equal(push.States.Count, log.States.Count);
        for (int i = 0; i < push.States.Count; i++) Assert.Equal(Json(push.States[i]), Json(log.States[i]));
        Assert.Equal(push.Records.Select(Decisions), log.Records.Select(Decisions));
        // The search did something: some child entered an archive.
        Assert.Contains(log.Records, r => r.ChildId != null);
    }

    [Fact]
    public void AskTell_CandidateRecipe_IsThePlanTheRecordReports()
    {
        var log = new RecordingSink();
        using var engine = AskTellEngine(Options(1), new InMemoryEliteStore(), log);
        engine.Initialize(_inputs.Experts.Select(e => (IReadOnlyList<double>)Score(e.Weights)).ToList());
        var c = engine.Ask();
        var planned = engine.CaptureState().InFlight.Single(p => p.Generation == c.Generation);
        Assert.Equal(planned.Parents, c.Parents);
        Assert.Equal(planned.Weights, c.CrossoverWeights);
        Assert.Equal(planned.QualityTask, c.QualityTask);
        var record = Assert.Single(engine.Tell(c.Id, Score(c.Weights)));
        Assert.Equal(c.Parents, record.Parents);
        Assert.Equal(c.CrossoverWeights, record.Weights);
    }

    [Fact]
    public void AskTell_ToldOutOfOrder_CommitsOnlyWhenTheEarlierGenerationIsTold()
    {
        var push = PushRun(Options(2), 2);
        var log = new RecordingSink();
        using var engine = AskTellEngine(Options(2), new InMemoryEliteStore(), log);
        engine.Initialize(_inputs.Experts.Select(e => (IReadOnlyList<double>)Score(e.Weights)).ToList());
        var first = engine.Ask();
        var second = engine.Ask();
        Assert.Equal(first.Generation + 1, second.Generation);
        var ex = Assert.Throws<InvalidOperationException>(() => engine.Ask());
        Assert.Contains("in_flight = 2", ex.Message);

        Assert.Empty(engine.Tell(second.Id, Score(second.Weights)));
        Assert.Equal(0, engine.NextGeneration);
        var both = engine.Tell(first.Id, Score(first.Weights));
        Assert.Equal([0, 1], both.Select(r => r.Generation));
        Assert.Equal(Json(push.States[^1]), Json(log.States[^1]));
    }

    [Fact]
    public async Task Resume_PushCheckpointContinuedByAskTell_EqualsUninterruptedPushRun()
    {
        const int half = 4, generations = 9;
        var whole = PushRun(Options(2), generations);

        var store = new InMemoryEliteStore();
        var first = new RecordingSink();
        using (var engine = new CycleQDEngine(Options(2), _inputs.Backend, _inputs.Base, _inputs.Experts, _inputs.Problem, store, first))
        {
            await engine.InitializeAsync(TestContext.Current.CancellationToken);
            await engine.RunAsync(half, TestContext.Current.CancellationToken);
        }
        var checkpoint = first.States[^1];
        Assert.Equal(half, checkpoint.NextGeneration);

        var second = new RecordingSink();
        using (var engine = AskTellEngine(Options(2), store, second))
        {
            engine.Restore(checkpoint);
            while (engine.NextGeneration < generations)
            {
                var c = engine.Ask();
                engine.Tell(c.Id, Score(c.Weights));
            }
        }
        Assert.Equal(Json(whole.States[^1]), Json(second.States[^1]));
        Assert.Equal(whole.Records.Skip(half).Select(Decisions), second.Records.Select(Decisions));
    }

    [Fact]
    public async Task Resume_AskTellCheckpointWithACandidateOut_ContinuedByPush_EqualsUninterruptedPushRun()
    {
        const int half = 5, generations = 8;
        var whole = PushRun(Options(1), generations);

        var store = new InMemoryEliteStore();
        var first = new RecordingSink();
        RunState checkpoint;
        using (var engine = AskTellEngine(Options(1), store, first))
        {
            engine.Initialize(_inputs.Experts.Select(e => (IReadOnlyList<double>)Score(e.Weights)).ToList());
            while (engine.NextGeneration < half)
            {
                var c = engine.Ask();
                engine.Tell(c.Id, Score(c.Weights));
            }
            // A host that stops with a candidate out: the committed state still carries its plan.
            engine.Ask();
            checkpoint = first.States[^1];
        }

        var second = new RecordingSink();
        using (var engine = new CycleQDEngine(Options(1), _inputs.Backend, _inputs.Base, _inputs.Experts, _inputs.Problem, store, second))
        {
            engine.Restore(checkpoint);
            await engine.RunAsync(generations, TestContext.Current.CancellationToken);
        }
        Assert.Equal(Json(whole.States[^1]), Json(second.States[^1]));
    }

    [Fact]
    public void Tell_BadScoresOrUnknownId_IsRefusedAndTheCandidateStaysOut()
    {
        using var engine = AskTellEngine(Options(1), new InMemoryEliteStore(), new RecordingSink());
        engine.Initialize(_inputs.Experts.Select(e => (IReadOnlyList<double>)Score(e.Weights)).ToList());
        var c = engine.Ask();
        var nan = Assert.Throws<ArgumentException>(() => engine.Tell(c.Id, [0.1, double.NaN, 0.2]));
        Assert.Contains("'b'", nan.Message);
        var count = Assert.Throws<ArgumentException>(() => engine.Tell(c.Id, [0.1]));
        Assert.Contains("1 scores told for 3 tasks", count.Message);
        var unknown = Assert.Throws<ArgumentException>(() => engine.Tell("gen-99", [0.1, 0.2, 0.3]));
        Assert.Contains("gen-99", unknown.Message);
        Assert.Single(engine.Tell(c.Id, Score(c.Weights)));
        Assert.Throws<ArgumentException>(() => engine.Tell(c.Id, Score(_inputs.Base)));
    }

    [Fact]
    public void TellNonFinite_ScoresZeroAndKeepsTheChildOutOfTheArchives()
    {
        using var engine = AskTellEngine(Options(1), new InMemoryEliteStore(), new RecordingSink());
        engine.Initialize(_inputs.Experts.Select(e => (IReadOnlyList<double>)Score(e.Weights)).ToList());
        var c = engine.Ask();
        var r = Assert.Single(engine.TellNonFinite(c.Id, "layers.0.weight: 1 NaN"));
        Assert.Equal("layers.0.weight: 1 NaN", r.NonFinite);
        Assert.All(r.Scores, s => Assert.Equal(0.0, s));
        Assert.Null(r.ChildId);
    }

    [Fact]
    public async Task PushMethods_OnAnEngineWithoutEvaluator_SayToUseAskTell()
    {
        using var engine = AskTellEngine(Options(1), new InMemoryEliteStore(), new RecordingSink());
        var init = await Assert.ThrowsAsync<InvalidOperationException>(() => engine.InitializeAsync(TestContext.Current.CancellationToken));
        Assert.Contains("without an evaluator", init.Message);
        engine.Initialize(_inputs.Experts.Select(e => (IReadOnlyList<double>)Score(e.Weights)).ToList());
        var c = engine.Ask();
        var run = await Assert.ThrowsAsync<InvalidOperationException>(() => engine.RunAsync(5, TestContext.Current.CancellationToken));
        Assert.Contains("without an evaluator", run.Message);
        // The refused call left the asked candidate out and usable.
        Assert.Single(engine.Tell(c.Id, Score(c.Weights)));
    }
}
