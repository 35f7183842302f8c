using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Core.Synthetic;
using CycleQD.Cpu;
using CycleQD.Tensors;

namespace CycleQD.Runs.Tests;

/// <summary>The experts are handed to the evaluator together, so a distributed evaluator can score them side by side.</summary>
public sealed class ExpertScoringTests : IDisposable
{
    private static readonly string[] Tasks = ["a", "b", "c"];
    private readonly SyntheticEngineInputs _inputs = new(Tasks, new SyntheticProblemOptions(Layers: 1, Rows: 8, Cols: 8, DType: DType.F32, Seed: 5));

    public void Dispose() => _inputs.Dispose();

    /// <summary>Answers nothing until every expert has been asked for: a sequential caller never gets past the first.</summary>
    private sealed class BarrierEvaluator(SyntheticProblem inner, int experts) : ICandidateEvaluator
    {
        private readonly List<(TaskCompletionSource<double[]> Done, IWeightSet Candidate)> _asked = [];
        public int MostOutstanding { get; private set; }
        public IReadOnlyList<string> TaskNames => inner.TaskNames;

        public Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken)
        {
            var done = new TaskCompletionSource<double[]>(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_asked)
            {
                _asked.Add((done, candidate));
                MostOutstanding = Math.Max(MostOutstanding, _asked.Count(a => !a.Done.Task.IsCompleted));
                if (_asked.Count == experts)
                    foreach (var (d, c) in _asked) d.SetResult(inner.EvaluateAsync(backend, c, cancellationToken).GetAwaiter().GetResult());
            }
            return done.Task;
        }
    }

    private sealed class FailingEvaluator(SyntheticProblem inner, string failOn) : ICandidateEvaluator
    {
        public IReadOnlyList<string> TaskNames => inner.TaskNames;
        public int Calls;
        public Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("not used");
        public Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CandidateContext context, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref Calls);
            return context.Expert == failOn
                ? Task.FromException<double[]>(new InvalidOperationException("worker lost on " + failOn))
                : inner.EvaluateAsync(backend, candidate, cancellationToken);
        }
    }

    private static CycleQDOptions Options => new() { Tasks = Tasks, Bins = 4, Seed = 7 };

    /// <summary>Scores the experts; of the children, fails the first and never answers the others unless cancelled (a worker that is gone).</summary>
    private sealed class GoneWorkerEvaluator(SyntheticProblem inner) : ICandidateEvaluator
    {
        public int Cancelled;
        public IReadOnlyList<string> TaskNames => inner.TaskNames;
        public Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("not used");
        public async Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CandidateContext context, CancellationToken cancellationToken)
        {
            if (context.Plan is not { } plan) return await inner.EvaluateAsync(backend, candidate, cancellationToken);
            if (plan.Generation == 0) throw new InvalidOperationException("generation 0 failed");
            try { await Task.Delay(Timeout.Infinite, cancellationToken); }
            catch (OperationCanceledException) { Interlocked.Increment(ref Cancelled); throw; }
            throw new InvalidOperationException("unreachable");
        }
    }

    [Fact]
    public async Task AFailedGeneration_CancelsTheEvaluationsInFlight_InsteadOfWaitingForThem()
    {
        var gone = new GoneWorkerEvaluator(_inputs.Problem);
        var engine = new CycleQDEngine(Options with { InFlight = 3 }, _inputs.Backend, _inputs.Base, _inputs.Experts, gone, new InMemoryEliteStore());
        var ct = TestContext.Current.CancellationToken;
        await engine.InitializeAsync(ct);
        // Generations 1 and 2 were started ahead of 0 and would never finish: dropping them must
        // cancel them, and the run end with generation 0's error. The minute is a guard, not a
        // timing: the broken engine blocks for ever (and is then left undisposed, which would block too).
        var run = Task.Run(() => engine.RunAsync(5, ct), ct);
        Assert.True(await Task.WhenAny(run, Task.Delay(TimeSpan.FromMinutes(1), ct)) == run,
            "the run never returned after generation 0 failed: the evaluations in flight were waited for, not cancelled");
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => run);
        Assert.Equal("generation 0 failed", e.Message);
        Assert.Equal(2, gone.Cancelled);
        Assert.Equal(0, engine.NextGeneration);
        engine.Dispose();
    }

    [Fact]
    public async Task Experts_AreAllOutstandingAtOnce_AndScoreAsOneByOne()
    {
        var barrier = new BarrierEvaluator(_inputs.Problem, _inputs.Experts.Count);
        using var engine = new CycleQDEngine(Options, _inputs.Backend, _inputs.Base, _inputs.Experts, barrier, new InMemoryEliteStore());
        await engine.InitializeAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        Assert.Equal(_inputs.Experts.Count, barrier.MostOutstanding);

        using var plain = new CycleQDEngine(Options, _inputs.Backend, _inputs.Base, _inputs.Experts, _inputs.Problem, new InMemoryEliteStore());
        await plain.InitializeAsync(TestContext.Current.CancellationToken);
        for (int a = 0; a < Tasks.Length; a++)
            Assert.Equal(plain.Archives[a].Cells.Select(c => (c.Key, c.Value.Id)), engine.Archives[a].Cells.Select(c => (c.Key, c.Value.Id)));
    }

    [Fact]
    public async Task OneExpertFailing_FailsTheStartWithItsError_AfterAllWereAsked()
    {
        var failing = new FailingEvaluator(_inputs.Problem, "b");
        using var engine = new CycleQDEngine(Options, _inputs.Backend, _inputs.Base, _inputs.Experts, failing, new InMemoryEliteStore());
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => engine.InitializeAsync(TestContext.Current.CancellationToken));
        Assert.Equal("worker lost on b", e.Message);
        Assert.Equal(3, failing.Calls);
    }
}
