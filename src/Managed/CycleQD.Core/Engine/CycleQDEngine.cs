using System.Diagnostics;
using CycleQD.Core.Archives;
using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using CycleQD.Core.Random;
using CycleQD.Core.Sampling;

namespace CycleQD.Core.Engine;

/// <summary>A seed expert: a name and its weights (owned by the caller, alive as long as the engine).</summary>
public sealed record Expert(string Name, IWeightSet Weights);

/// <summary>
/// The CycleQD loop. Generation g: quality task k = (g / interval) mod N; two parents drawn from
/// archive k; child = crossover + mutation on the compute backend; scored on all N tasks; offered to
/// every archive; state committed. Everything random is a Philox draw addressed by (seed,
/// generation, stream), so a run is a pure function of its options, its inputs and the evaluator.
/// Two ways to drive it: push (<see cref="RunAsync"/> / <see cref="StepAsync"/>, the engine calls the
/// evaluator) or ask/tell (<see cref="Ask"/> hands out a child, <see cref="Tell"/> commits its scores);
/// both make the same decisions from the same scores. Not thread-safe: one caller drives it.
/// </summary>
public sealed class CycleQDEngine : IDisposable
{
    private readonly CycleQDOptions _options;
    private readonly IComputeBackend _backend;
    private readonly IWeightSet _base;
    private readonly IReadOnlyList<Expert> _expertList;
    private readonly ICandidateEvaluator? _evaluator;
    private readonly IEliteStore _store;
    private readonly ICheckpointSink? _sink;
    private readonly ChildBuilder _builder;
    private readonly SortedDictionary<int, BreedingPlan> _plans = new();
    private readonly Dictionary<int, Job> _jobs = new();
    // Children of applied generations, kept for the next merge to write into (at most D of them).
    private readonly Stack<IWeightSet> _spare = new();
    private Archive[] _archives = [];
    private BinSpec[] _bins = [];
    private ExpertState[] _expertStates = [];
    private bool _initialised;

    // NonFinite: why the child was found non-finite while it was bred (then Scores are zeros), else null.
    // Told: set for a child handed out by Ask; Tell completes it (Scores is its task).
    // Abandon: cancels the child's evaluation when its result will not be read (DropJobs).
    private sealed record Job(IWeightSet Child, Task<double[]> Scores, double BreedSeconds, long StartedTicks, string? NonFinite,
        TaskCompletionSource<double[]>? Told = null, Candidate? Asked = null, CancellationTokenSource? Abandon = null);

    /// <summary>The first generation not applied yet.</summary>
    public int NextGeneration { get; private set; }

    /// <summary>Raised after each generation is committed.</summary>
    public event Action<GenerationRecord>? GenerationCompleted;

    /// <param name="options">Algorithm settings (validated here).</param>
    /// <param name="backend">Compute backend that owns all weight sets below.</param>
    /// <param name="baseModel">Base model (caller-owned).</param>
    /// <param name="experts">Seed experts (caller-owned); names must be unique.</param>
    /// <param name="evaluator">Scores children on every task; its task names must equal <see cref="CycleQDOptions.Tasks"/>.</param>
    /// <param name="store">Where inserted children's weights are kept.</param>
    /// <param name="sink">Receives every committed state (null: none).</param>
    /// <param name="expertBases">With mutation basis expert: the SVD of each task's expert's task vector, by task name
    /// (every task needs one); ignored otherwise.</param>
    public CycleQDEngine(CycleQDOptions options, IComputeBackend backend, IWeightSet baseModel, IReadOnlyList<Expert> experts,
        ICandidateEvaluator evaluator, IEliteStore store, ICheckpointSink? sink = null,
        IReadOnlyDictionary<string, ExpertSvdBasis>? expertBases = null)
        : this(options, backend, baseModel, experts, store, sink, evaluator ?? throw new ArgumentNullException(nameof(evaluator)), expertBases)
    {
    }

    /// <summary>
    /// An engine driven by ask/tell only: the host scores the experts (<see cref="Initialize"/>) and
    /// every child (<see cref="Ask"/>, then <see cref="Tell"/>) itself; <see cref="StepAsync"/>,
    /// <see cref="RunAsync"/> and <see cref="InitializeAsync"/> need an evaluator and refuse.
    /// </summary>
    /// <param name="options">Algorithm settings (validated here).</param>
    /// <param name="backend">Compute backend that owns all weight sets below.</param>
    /// <param name="baseModel">Base model (caller-owned).</param>
    /// <param name="experts">Seed experts (caller-owned); names must be unique.</param>
    /// <param name="store">Where inserted children's weights are kept.</param>
    /// <param name="sink">Receives every committed state (null: none; not optional, so the two constructors never compete).</param>
    /// <remarks>The SVD mutation in the expert basis needs the experts' SVDs, which this constructor does not take: use <c>mutation.basis: child</c> (the default) here.</remarks>
    public CycleQDEngine(CycleQDOptions options, IComputeBackend backend, IWeightSet baseModel, IReadOnlyList<Expert> experts,
        IEliteStore store, ICheckpointSink? sink)
        : this(options, backend, baseModel, experts, store, sink, null, null)
    {
    }

    private CycleQDEngine(CycleQDOptions options, IComputeBackend backend, IWeightSet baseModel, IReadOnlyList<Expert> experts,
        IEliteStore store, ICheckpointSink? sink, ICandidateEvaluator? evaluator, IReadOnlyDictionary<string, ExpertSvdBasis>? expertBases)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(baseModel);
        ArgumentNullException.ThrowIfNull(experts);
        ArgumentNullException.ThrowIfNull(store);
        options.Validate();
        if (evaluator != null && !evaluator.TaskNames.SequenceEqual(options.Tasks))
            throw new ConfigurationException($"tasks: the evaluator scores [{string.Join(", ", evaluator.TaskNames)}] but the experiment lists [{string.Join(", ", options.Tasks)}]");
        _builder = new ChildBuilder(options, backend, baseModel, experts, store, expertBases);
        _options = options;
        _backend = backend;
        _base = baseModel;
        _expertList = experts;
        _evaluator = evaluator;
        _store = store;
        _sink = sink;
    }

    /// <summary>The options in force.</summary>
    public CycleQDOptions Options => _options;

    /// <summary>Read-only view of the archives, one per task in task order, or the one mean-quality archive without the cycle (valid after initialisation).</summary>
    public IReadOnlyList<Archive> Archives => _archives;

    /// <summary>
    /// Fresh start: scores every expert, fixes the bins (explicit bounds or the paper's rule) and
    /// seeds every archive with the experts; commits the initial state. The experts are handed to the
    /// evaluator all at once (as children in flight are), so an evaluator that spreads work over
    /// workers scores them side by side; one that serialises its calls scores them in turn.
    /// </summary>
    public async Task InitializeAsync(CancellationToken cancellationToken = default)
    {
        if (_initialised) throw new InvalidOperationException("already initialised");
        var evaluator = RequireEvaluator(nameof(InitializeAsync));
        var pending = new List<Task<double[]>>(_expertList.Count);
        foreach (var e in _expertList)
        {
            try
            {
                pending.Add(evaluator.EvaluateAsync(_backend, e.Weights, CandidateContext.ForExpert(e.Name), cancellationToken));
            }
            catch (Exception ex)
            {
                pending.Add(Task.FromException<double[]>(ex));
            }
        }
        // Every expert's evaluation has ended (none is left touching its weights) before a failure surfaces.
        try { await Task.WhenAll(pending).ConfigureAwait(false); }
        catch when (pending.Any(t => t.IsFaulted || t.IsCanceled)) { }
        var failed = pending.FirstOrDefault(t => t.IsFaulted || t.IsCanceled);
        if (failed != null) await failed.ConfigureAwait(false);
        Initialize(pending.Select(t => t.Result).ToList());
    }

    /// <summary>
    /// Fresh start with expert scores the host computed (ask/tell): <paramref name="expertScores"/>[i]
    /// holds expert i's score on every task, in the order of <see cref="CycleQDOptions.Tasks"/>. Fixes
    /// the bins, seeds the archives and commits the initial state, as <see cref="InitializeAsync"/> does.
    /// </summary>
    public void Initialize(IReadOnlyList<IReadOnlyList<double>> expertScores)
    {
        ArgumentNullException.ThrowIfNull(expertScores);
        if (_initialised) throw new InvalidOperationException("already initialised");
        if (expertScores.Count != _expertList.Count)
            throw new ArgumentException($"{expertScores.Count} score lists given for {_expertList.Count} experts", nameof(expertScores));
        int n = _options.Tasks.Count;
        var states = new List<ExpertState>();
        for (int i = 0; i < _expertList.Count; i++)
        {
            double[] s = [.. expertScores[i]];
            CheckScores(s, $"expert '{_expertList[i].Name}'");
            states.Add(new ExpertState(_expertList[i].Name, s));
        }
        _expertStates = [.. states];
        _bins = new BinSpec[n];
        for (int t = 0; t < n; t++)
        {
            string task = _options.Tasks[t];
            _bins[t] = _options.Bounds.TryGetValue(task, out var b)
                ? new BinSpec(b.Lower, b.Upper, _options.Bins)
                : BinSpec.FromExpertScores(_expertStates.Select(x => x.Scores[t]), _options.Bins);
            if (!_options.Bounds.ContainsKey(task) && !(_bins[t].Lower < _bins[t].Upper))
                throw new ConfigurationException($"archive.bounds.{task}: the experts' scores give the empty range [{_bins[t].Lower}, {_bins[t].Upper}]; set explicit bounds for this task");
        }
        _archives = _options.NewArchives(_bins);
        foreach (var e in _expertStates)
            foreach (var a in _archives) a.TryInsert(new Elite(ExpertId(e.Name), e.Scores, -1));
        NextGeneration = 0;
        _initialised = true;
        _sink?.Commit(CaptureState(), null);
        // Generation 0's peak then covers its own work, not the experts' upload and scoring.
        (_backend as IDeviceMemoryGauge)?.ResetPeak();
    }

    /// <summary>Continues from a committed state (same options, base and experts as the run that wrote it).</summary>
    public void Restore(RunState state)
    {
        if (_initialised) throw new InvalidOperationException("already initialised");
        int n = _options.Tasks.Count;
        if (state.Seed != _options.Seed) throw new ConfigurationException($"checkpoint: seed {state.Seed} differs from the experiment's {_options.Seed}");
        if (state.Bins.Count != n)
            throw new ConfigurationException($"checkpoint: bins for {state.Bins.Count} tasks, the experiment has {n} tasks");
        var fresh = _options.NewArchives(state.Bins);
        if (state.Archives.Count != fresh.Length || state.Archives.Any(a => !fresh.Any(f => f.Task == a.Task)))
            throw new ConfigurationException(_options.Cycle
                ? $"checkpoint: {state.Archives.Count} archive(s) [{string.Join(", ", state.Archives.Select(a => a.Task))}], the experiment has one per task ({n}); was the run started with archive.cycle: false?"
                : $"checkpoint: {state.Archives.Count} archive(s), the experiment (archive.cycle: false) has the one mean-quality archive; was the run started with the cycle?");
        foreach (var e in state.Experts)
            if (!_expertList.Any(x => x.Name == e.Name)) throw new ConfigurationException($"checkpoint: expert '{e.Name}' is not in the experiment");
        _bins = [.. state.Bins];
        _expertStates = [.. state.Experts];
        _archives = fresh;
        foreach (var a in state.Archives)
        {
            var archive = _archives.First(x => x.Task == a.Task);
            foreach (var c in a.Cells) archive.Restore(c.Cell, c.Elite);
        }
        foreach (var p in state.InFlight) _plans[p.Generation] = p;
        NextGeneration = state.NextGeneration;
        _initialised = true;
        // As after a fresh start: the first generation's peak covers its own work, not the uploads before it.
        (_backend as IDeviceMemoryGauge)?.ResetPeak();
    }

    /// <summary>The state as it would be committed now (plans in flight included; running evaluations are redone on resume).</summary>
    public RunState CaptureState() => new(
        _options.Seed, NextGeneration, _bins, _expertStates,
        _archives.Select(a => new ArchiveState(a.Task, a.Cells.Select(kv => new CellState(kv.Key, kv.Value)).ToArray())).ToArray(),
        _plans.Values.ToArray());

    /// <summary>Id under which expert <paramref name="name"/> appears in archives.</summary>
    public static string ExpertId(string name) => EliteIds.Expert(name);

    /// <summary>
    /// Runs generation <see cref="NextGeneration"/> to completion and commits it. Children of later
    /// generations (up to D − 1 ahead, never at or past <paramref name="targetGenerations"/>) are
    /// started so their evaluation overlaps. Cancellation abandons the generation uncommitted.
    /// </summary>
    public async Task<GenerationRecord> StepAsync(int targetGenerations, CancellationToken cancellationToken = default)
    {
        if (!_initialised) throw new InvalidOperationException("call InitializeAsync or Restore first");
        RequireEvaluator(nameof(StepAsync));
        if (_jobs.Values.Any(j => j.Told != null))
            throw new InvalidOperationException("candidates handed out by Ask are not told yet: finish them with Tell before stepping");
        if (NextGeneration >= targetGenerations) throw new InvalidOperationException($"generation {NextGeneration} is not below the target {targetGenerations}");
        long t0 = Stopwatch.GetTimestamp();
        int g = NextGeneration;
        for (int p = g; p < g + _options.InFlight; p++)
            if (!_plans.ContainsKey(p)) _plans[p] = Plan(p);
        for (int p = g; p < Math.Min(g + _options.InFlight, targetGenerations); p++)
            if (!_jobs.ContainsKey(p)) _jobs[p] = Start(_plans[p], cancellationToken);

        var job = _jobs[g];
        double[] scores;
        string? nonFinite = job.NonFinite;
        try
        {
            scores = await job.Scores.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (NonFiniteWeightsException e) when (!cancellationToken.IsCancellationRequested)
        {
            // The evaluator met the overflow (no mutation step saw it): same outcome as in breeding.
            nonFinite = e.Message;
            scores = new double[_options.Tasks.Count];
        }
        catch
        {
            DropJobs();
            throw;
        }
        return Commit(g, job, scores, nonFinite, t0);
    }

    // Applies generation g (the head of the queue) with its child's scores: archives, store,
    // the next plans, the checkpoint and the event. Shared by the push and the ask/tell paths,
    // so both make the same decisions from the same scores.
    private GenerationRecord Commit(int g, Job job, double[] scores, string? nonFinite, long t0)
    {
        CheckScores(scores, $"generation {g}'s child");
        double evalSeconds = Stopwatch.GetElapsedTime(job.StartedTicks).TotalSeconds;
        var source = job.Told == null ? _evaluator as IEvaluationStatisticsSource : null;
        var statistics = source?.TakeStatistics(job.Child);
        string? evaluatedBy = source?.TakeEvaluatedBy(job.Child);
        double? bindSeconds = source?.TakeBindSeconds(job.Child);
        long? peakDevice = (_backend as IDeviceMemoryGauge)?.PeakBytes;

        var plan = _plans[g];
        string? childId = null;
        var insertions = new List<Insertion>();
        // A non-finite child scores 0 everywhere, which an empty cell would still take: keep it out.
        if (nonFinite is null && _archives.Any(a => a.WouldAccept(scores)))
        {
            childId = _store.Add(_backend, job.Child);
            var elite = new Elite(childId, scores, g);
            foreach (var a in _archives)
            {
                int cell = a.CellOf(scores);
                if (a.TryInsert(elite)) insertions.Add(new Insertion(a.Task, cell));
            }
        }
        _spare.Push(job.Child);
        _jobs.Remove(g);
        job.Abandon?.Dispose();
        _plans.Remove(g);
        NextGeneration = g + 1;
        // The next plan is drawn now, from the archives as they stand after generation g, so that the
        // committed state carries it and a resumed run draws nothing differently.
        for (int p = NextGeneration; p < NextGeneration + _options.InFlight; p++)
            if (!_plans.ContainsKey(p)) _plans[p] = Plan(p);

        var record = new GenerationRecord(g, plan.QualityTask, plan.Parents, plan.Weights, scores, childId, insertions,
            _archives.Select(a => new ArchiveSummary(a.Task, a.Cells.Count, a.QdScore, a.Coverage, a.BestQuality)).ToArray(),
            new GenerationTiming(job.BreedSeconds, evalSeconds, Stopwatch.GetElapsedTime(t0).TotalSeconds, DateTime.UtcNow), nonFinite, statistics, evaluatedBy, bindSeconds, peakDevice);
        _sink?.Commit(CaptureState(), record);
        (_backend as IDeviceMemoryGauge)?.ResetPeak();
        _store.RemoveAllExcept(LiveIds());
        GenerationCompleted?.Invoke(record);
        return record;
    }

    /// <summary>Steps until <paramref name="targetGenerations"/> generations are applied or cancellation is requested (then returns quietly; the last committed state stands).</summary>
    public async Task RunAsync(int targetGenerations, CancellationToken cancellationToken = default)
    {
        // Checked before the loop, whose clean-up would otherwise drop the host's asked candidates.
        RequireEvaluator(nameof(RunAsync));
        if (_jobs.Values.Any(j => j.Told != null))
            throw new InvalidOperationException("candidates handed out by Ask are not told yet: finish them with Tell before running");
        try
        {
            while (NextGeneration < targetGenerations && !cancellationToken.IsCancellationRequested)
                await StepAsync(targetGenerations, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            DropJobs();
        }
    }

    /// <summary>
    /// Ask/tell: breeds the next child and hands it out instead of evaluating it. Up to
    /// <see cref="CycleQDOptions.InFlight"/> candidates may be out at once (the generations from
    /// <see cref="NextGeneration"/> on); asking for more throws. Plans and random draws are those of
    /// the push loop, so scores told in the same order give the same run as <see cref="RunAsync"/>.
    /// Children that <see cref="StepAsync"/> started ahead are dropped (and bred again, identically).
    /// </summary>
    public Candidate Ask()
    {
        if (!_initialised) throw new InvalidOperationException("call Initialize, InitializeAsync or Restore first");
        if (_jobs.Values.Any(j => j.Told == null)) DropJobs();
        int g = NextGeneration;
        for (int p = g; p < g + _options.InFlight; p++)
            if (!_plans.ContainsKey(p)) _plans[p] = Plan(p);
        for (int p = g; p < g + _options.InFlight; p++)
        {
            if (_jobs.ContainsKey(p)) continue;
            var job = Start(_plans[p], CancellationToken.None, asked: true);
            _jobs[p] = job;
            return job.Asked!;
        }
        throw new InvalidOperationException($"{_options.InFlight} candidate(s) are out (in_flight = {_options.InFlight}): tell one before asking again");
    }

    /// <summary>
    /// Ask/tell: the scores of candidate <paramref name="id"/> on every task, in the order of
    /// <see cref="CycleQDOptions.Tasks"/>, each finite. Generations commit in order: this call
    /// commits the candidate's generation and any later ones already told once every earlier one
    /// is told, and returns their records (empty while an earlier candidate is still out). Each
    /// commit reaches the checkpoint sink and <see cref="GenerationCompleted"/> as in the push loop.
    /// </summary>
    public IReadOnlyList<GenerationRecord> Tell(string id, IReadOnlyList<double> scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        var job = Outstanding(id);
        double[] s = [.. scores];
        if (s.Length != _options.Tasks.Count)
            throw new ArgumentException($"candidate '{id}': {s.Length} scores told for {_options.Tasks.Count} tasks", nameof(scores));
        for (int i = 0; i < s.Length; i++)
            if (!double.IsFinite(s[i])) throw new ArgumentException($"candidate '{id}': score on '{_options.Tasks[i]}' is {s[i]}", nameof(scores));
        job.Told!.TrySetResult(job.NonFinite != null ? new double[s.Length] : s);
        return CommitTold();
    }

    /// <summary>
    /// Ask/tell: candidate <paramref name="id"/> could not be scored because its weights are not
    /// finite (<paramref name="reason"/> says where). It scores 0 on every task, enters no archive and
    /// the reason is recorded, as when an evaluator throws <see cref="NonFiniteWeightsException"/>.
    /// </summary>
    public IReadOnlyList<GenerationRecord> TellNonFinite(string id, string reason)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        var job = Outstanding(id);
        int g = job.Asked!.Generation;
        _jobs[g] = job with { NonFinite = job.NonFinite ?? reason };
        job.Told!.TrySetResult(new double[_options.Tasks.Count]);
        return CommitTold();
    }

    private Job Outstanding(string id)
    {
        ArgumentNullException.ThrowIfNull(id);
        foreach (var j in _jobs.Values)
            if (j.Asked?.Id == id && !j.Scores.IsCompleted) return j;
        throw new ArgumentException($"no candidate '{id}' is waiting for scores (told already, never asked, or dropped by a push step)", nameof(id));
    }

    private List<GenerationRecord> CommitTold()
    {
        var committed = new List<GenerationRecord>();
        while (_jobs.TryGetValue(NextGeneration, out var head) && head.Told != null && head.Scores.IsCompletedSuccessfully)
            committed.Add(Commit(NextGeneration, head, head.Scores.Result, head.NonFinite, Stopwatch.GetTimestamp()));
        return committed;
    }

    private static string CandidateId(int generation) => $"gen-{generation}";

    private ICandidateEvaluator RequireEvaluator(string operation) => _evaluator
        ?? throw new InvalidOperationException($"{operation}: this engine was built without an evaluator (ask/tell); use Initialize(expertScores), Ask and Tell");

    private void DropJobs()
    {
        // Nobody will read these results: an evaluation that honours its token stops now, instead
        // of being waited for (one waiting on a worker that is gone would be waited for ever).
        foreach (var j in _jobs.Values)
        {
            try { j.Abandon?.Cancel(); }
            catch (AggregateException) { }
        }
        foreach (var j in _jobs.Values)
        {
            // An asked child is waiting for the host, not for a running evaluation.
            if (j.Told != null) j.Told.TrySetCanceled();
            else { try { j.Scores.Wait(); } catch (AggregateException) { } }
            j.Abandon?.Dispose();
            j.Child.Dispose();
        }
        _jobs.Clear();
    }

    private HashSet<string> LiveIds()
    {
        var live = new HashSet<string>(StringComparer.Ordinal);
        foreach (var a in _archives) foreach (var e in a.Cells.Values) live.Add(e.Id);
        foreach (var p in _plans.Values) foreach (var id in p.Parents) live.Add(id);
        return live;
    }

    private BreedingPlan Plan(int g)
    {
        int k = _options.QualityTaskOf(g);
        var (a, b) = ParentSampler.Draw(_options.Cycle ? _archives[k] : _archives[0], _options.Sampling, _options.Seed, (uint)g);
        var c = _options.Crossover;
        float w0 = (float)(c.Mean + c.Std * Philox4x32.Normal(_options.Seed, Streams.Crossover, (uint)g, 0, 0));
        float w1 = (float)(c.Mean + c.Std * Philox4x32.Normal(_options.Seed, Streams.Crossover, (uint)g, 0, 1));
        // A weight sum near zero would blow the merge up; it takes σ comparable to μ, and then the
        // parents are averaged instead.
        if (MathF.Abs(w0 + w1) < 1e-6f) (w0, w1) = (1f, 1f);
        return new BreedingPlan(g, k, [a.Id, b.Id], [w0, w1]);
    }

    private Job Start(BreedingPlan plan, CancellationToken cancellationToken, bool asked = false)
    {
        long t0 = Stopwatch.GetTimestamp();
        _spare.TryPop(out var reuse);
        var (child, nonFinite) = _builder.Build(plan, reuse);
        double breed = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        Task<double[]> scores;
        if (asked)
        {
            var told = new TaskCompletionSource<double[]>(TaskCreationOptions.RunContinuationsAsynchronously);
            var candidate = new Candidate(CandidateId(plan.Generation), plan.Generation, plan.QualityTask, plan.Parents, plan.Weights,
                new MutationKey(_options.Mutation.Kind, _options.Seed, (uint)plan.Generation), child, nonFinite);
            return new Job(child, told.Task, breed, Stopwatch.GetTimestamp(), nonFinite, told, candidate);
        }
        if (nonFinite != null)
        {
            return new Job(child, Task.FromResult(new double[_options.Tasks.Count]), breed, Stopwatch.GetTimestamp(), nonFinite);
        }
        var abandon = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        try
        {
            scores = _evaluator!.EvaluateAsync(_backend, child, CandidateContext.ForChild(plan, _options.Mutation.Kind, _options.Seed), abandon.Token);
        }
        catch (Exception e)
        {
            scores = Task.FromException<double[]>(e);
        }
        return new Job(child, scores, breed, Stopwatch.GetTimestamp(), nonFinite, Abandon: abandon);
    }

    private void CheckScores(double[] s, string what)
    {
        if (s.Length != _options.Tasks.Count)
            throw new InvalidOperationException($"{what}: the evaluator returned {s.Length} scores for {_options.Tasks.Count} tasks");
        for (int i = 0; i < s.Length; i++)
            if (!double.IsFinite(s[i])) throw new InvalidOperationException($"{what}: score on '{_options.Tasks[i]}' is {s[i]}");
    }

    /// <summary>
    /// Releases children still in flight (their evaluations cancelled, then waited for) and spare
    /// buffers (the caller owns base, experts, backend and store).
    /// </summary>
    public void Dispose()
    {
        DropJobs();
        while (_spare.TryPop(out var s)) s.Dispose();
    }
}
