using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using StackExchange.Redis;

namespace CycleQD.Runs.Distributed;

/// <summary>
/// The coordinator's evaluator: instead of scoring a candidate it publishes the candidate's recipe
/// as a job and waits for a worker's result. The engine keeps up to in_flight candidates out, so
/// that many workers are busy; it still builds every child itself (the archive stores the
/// coordinator's copy, so a worker never writes into the run directory), and checks that the
/// worker's rebuilt child has the same fingerprint as its own (ChildFingerprint). Results are taken from the results
/// stream from its start, so a restarted coordinator uses results that arrived while it was down;
/// a job is published again only when its recipe is not already out; a result delivered twice
/// counts once.
/// </summary>
internal sealed class RemoteEvaluator : ICandidateEvaluator, IEvaluationStatisticsSource, IAsyncDisposable
{
    private readonly WorkQueue _queue;
    private readonly string _backendKind;
    private readonly Action<string>? _notice;
    private readonly ConcurrentDictionary<string, Waiting> _waiting = new(StringComparer.Ordinal);
    // Results that came before anyone asked (a coordinator that restarted), by job id.
    private readonly ConcurrentDictionary<string, WorkResult> _early = new(StringComparer.Ordinal);
    // What the last result for a candidate said, each taken once by the engine (in either order).
    private readonly ConditionalWeakTable<IWeightSet, StrongBox<IReadOnlyList<TaskEvaluationStatistics>?>> _statistics = new();
    private readonly ConditionalWeakTable<IWeightSet, string> _workers = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly SemaphoreSlim _wake;
    private readonly Task _poller;
    private string _position = "0-0";
    // Why the results reader stopped (not a cancellation), failing every evaluation since; null while it reads.
    private Exception? _readerFailure;

    private sealed record Waiting(WorkJob Job, TaskCompletionSource<WorkResult> Done);

    public IReadOnlyList<string> TaskNames { get; }

    public RemoteEvaluator(WorkQueue queue, IReadOnlyList<string> tasks, string backendKind, Action<string>? notice)
    {
        _queue = queue;
        TaskNames = tasks;
        _backendKind = backendKind;
        _notice = notice;
        _queue.EnsureGroupAsync(CancellationToken.None).GetAwaiter().GetResult();
        _queue.Retry(db => db.StringSetAsync(_queue.Epoch, DateTime.UtcNow.ToString("O"), when: When.NotExists), CancellationToken.None).GetAwaiter().GetResult();
        _wake = Task.Run(() => _queue.SubscribeAsync(_queue.ResultsAdded)).GetAwaiter().GetResult();
        _poller = Task.Run(() => PollAsync(_stop.Token));
    }

    public Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken) =>
        throw new InvalidOperationException("a distributed run scores candidates from their recipes: the engine passes a CandidateContext");

    public async Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CandidateContext context, CancellationToken cancellationToken)
    {
        var job = WorkJob.For(_queue.Run, context, WorkerIdentity.Build, _backendKind);
        var waiting = new Waiting(job, new TaskCompletionSource<WorkResult>(TaskCreationOptions.RunContinuationsAsynchronously));
        bool arrived;
        lock (_gate)
        {
            _waiting[job.Id] = waiting;
            arrived = _early.TryRemove(job.Id, out var early) && early.Recipe == job.Recipe && waiting.Done.TrySetResult(early);
            if (!arrived && _readerFailure is { } failure) waiting.Done.TrySetException(ReaderStopped(failure));
        }
        try
        {
            if (!arrived) await PublishAsync(job, cancellationToken).ConfigureAwait(false);
            var result = await waiting.Done.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            if (result.Error is { } error)
                throw new InvalidOperationException($"worker {result.Worker} could not score {job.Id}: {error}");
            if (context.Plan != null && result.ChildFingerprint != null)
            {
                string mine = ChildFingerprint.Of(backend, candidate);
                if (mine != result.ChildFingerprint)
                    throw new InvalidOperationException(
                        $"worker {result.Worker} rebuilt {job.Id} with other bits (fingerprint {result.ChildFingerprint}, this process's {mine}): a worker must run " +
                        "the same build and backend kind (and the same BLAS threads on the CPU) to rebuild a child bit for bit");
            }
            if (result.NonFinite is { } nf) throw new NonFiniteWeightsException(job.Id, "found by worker " + result.Worker + ": " + nf);
            if (result.Scores.Count != TaskNames.Count)
                throw new InvalidOperationException($"worker {result.Worker} returned {result.Scores.Count} scores for {TaskNames.Count} tasks ({job.Id})");
            _statistics.AddOrUpdate(candidate, new StrongBox<IReadOnlyList<TaskEvaluationStatistics>?>(result.Statistics));
            _workers.AddOrUpdate(candidate, result.Worker);
            return [.. result.Scores];
        }
        finally
        {
            _waiting.TryRemove(new KeyValuePair<string, Waiting>(job.Id, waiting));
        }
    }

    /// <summary>
    /// Publishes <paramref name="job"/> unless the same recipe is already out under its id (or
    /// <paramref name="always"/>).
    /// </summary>
    private async Task PublishAsync(WorkJob job, CancellationToken ct, bool always = false)
    {
        if (!always)
        {
            var published = await _queue.Retry(db => db.HashGetAsync(_queue.Published, job.Id), ct).ConfigureAwait(false);
            if (published == job.Recipe) return;
        }
        await _queue.Retry(async db =>
        {
            await db.StreamAddAsync(_queue.Jobs, "job", job.ToJson()).ConfigureAwait(false);
            await db.HashSetAsync(_queue.Published, job.Id, job.Recipe).ConfigureAwait(false);
        }, ct).ConfigureAwait(false);
        _queue.Notify(_queue.JobsAdded);
    }

    private async Task PollAsync(CancellationToken ct)
    {
        var lastEpochCheck = DateTime.UtcNow;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var entries = await _queue.Retry(db => db.StreamReadAsync(_queue.Results, _position, 200), ct).ConfigureAwait(false);
                foreach (var e in entries)
                {
                    _position = e.Id!;
                    WorkResult r;
                    try { r = WorkResult.Parse(e["result"]!); }
                    catch (System.Text.Json.JsonException) { continue; }
                    if (r.Run != _queue.Run) continue;
                    // One lock with the registration in EvaluateAsync: a result is matched to its
                    // waiter or kept for it, never dropped between the two.
                    lock (_gate)
                    {
                        if (_waiting.TryGetValue(r.Id, out var w) && w.Job.Recipe == r.Recipe) w.Done.TrySetResult(r);
                        else _early[r.Id] = r;
                    }
                }
                if (DateTime.UtcNow - lastEpochCheck > TimeSpan.FromSeconds(1))
                {
                    lastEpochCheck = DateTime.UtcNow;
                    await RecoverLostDataAsync(ct).ConfigureAwait(false);
                    await WarnWhenNobodyServesAsync(ct).ConfigureAwait(false);
                }
                // Woken by a worker's notice; the timeout is the fallback when a notice is lost.
                if (entries.Length == 0) await _wake.WaitAsync(TimeSpan.FromMilliseconds(250), ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (RedisException)
            {
                // A command that met a Redis going away or coming back (Retry covers most, not all):
                // the next round reads again, and a Redis that lost its data is recovered then.
                try { await Task.Delay(250, ct).ConfigureAwait(false); }
                catch (OperationCanceledException) { return; }
            }
            catch (Exception e)
            {
                // Without this reader no result would ever arrive: fail the evaluations instead of
                // leaving the run waiting for ever.
                lock (_gate)
                {
                    _readerFailure = e;
                    foreach (var w in _waiting.Values) w.Done.TrySetException(ReaderStopped(e));
                }
                return;
            }
        }
    }

    private static InvalidOperationException ReaderStopped(Exception e) =>
        new($"the coordinator stopped reading the workers' results: {e.GetType().Name}: {e.Message}", e);

    /// <summary>
    /// A Redis that restarted without its data has no epoch key, no group and none of the jobs: make
    /// them again and publish every job still waiting, whatever the published marks say: a publish
    /// that straddled the restart can leave its mark in the new Redis and its job in the lost one
    /// (the connection sends the mark after it reconnects). A job published twice is scored twice,
    /// and its result counts once.
    /// </summary>
    private async Task RecoverLostDataAsync(CancellationToken ct)
    {
        bool created = await _queue.Retry(db => db.StringSetAsync(_queue.Epoch, DateTime.UtcNow.ToString("O"), when: When.NotExists), ct).ConfigureAwait(false);
        if (!created) return;
        _notice?.Invoke($"redis: {_queue.Url} lost the run's queues (restarted without its data); publishing the {_waiting.Count} job(s) in flight again");
        _position = "0-0";
        await _queue.EnsureGroupAsync(ct).ConfigureAwait(false);
        foreach (var w in _waiting.Values)
            await PublishAsync(w.Job, ct, always: true).ConfigureAwait(false);
    }

    private DateTime? _unservedSince;
    private bool _saidUnserved;

    /// <summary>Says once when jobs have waited 30 s with no live worker on the run (heartbeats expire after 30 s).</summary>
    private async Task WarnWhenNobodyServesAsync(CancellationToken ct)
    {
        if (_waiting.IsEmpty) { _unservedSince = null; return; }
        bool anyWorker = await _queue.Retry(async db =>
        {
            await foreach (var _ in _queue.Server.KeysAsync(db.Database, $"cqd:{_queue.Run}:worker:*", pageSize: 10).WithCancellation(ct).ConfigureAwait(false))
                return true;
            return false;
        }, ct).ConfigureAwait(false);
        if (anyWorker) { _unservedSince = null; _saidUnserved = false; return; }
        _unservedSince ??= DateTime.UtcNow;
        if (!_saidUnserved && DateTime.UtcNow - _unservedSince > TimeSpan.FromSeconds(30))
        {
            _saidUnserved = true;
            _notice?.Invoke($"workers: {_waiting.Count} job(s) have waited 30 s and no worker serves this run; start one with `cycleqd worker --redis {_queue.Url} --run RUN_DIR`");
        }
    }

    public IReadOnlyList<TaskEvaluationStatistics>? TakeStatistics(IWeightSet candidate) =>
        _statistics.TryGetValue(candidate, out var s) && _statistics.Remove(candidate) ? s.Value : null;

    public string? TakeEvaluatedBy(IWeightSet candidate) =>
        _workers.TryGetValue(candidate, out var w) && _workers.Remove(candidate) ? w : null;

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try { await _poller.ConfigureAwait(false); } catch (OperationCanceledException) { }
        _stop.Dispose();
    }
}
