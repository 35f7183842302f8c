using System.Diagnostics;
using System.Globalization;
using CycleQD.Core;
using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Runs.Families;
using StackExchange.Redis;

namespace CycleQD.Runs.Distributed;

/// <summary>What <c>cycleqd worker</c> was told.</summary>
/// <param name="RedisUrl">redis://HOST:PORT[/DB] of the run's coordinator.</param>
/// <param name="RunDirectory">The run folder, on a file system shared with the coordinator (read only here).</param>
/// <param name="Device">Backend kind: cpu or cuda.</param>
/// <param name="GpuOrdinal">With cuda: which GPU.</param>
/// <param name="Name">The worker's name (default HOST-PID-DEVICE).</param>
/// <param name="VisibilityTimeout">How long a job may sit unclaimed by a live worker before another takes it over.</param>
/// <param name="IdleExit">Stop after this long without a job (null: run until stopped).</param>
/// <param name="Threads">ONNX Runtime intra-op threads per evaluation (null: the experiment's).</param>
public sealed record WorkerOptions(string RedisUrl, string RunDirectory, ComputeDevice Device = ComputeDevice.Cpu, int GpuOrdinal = 0,
    string? Name = null, TimeSpan? VisibilityTimeout = null, TimeSpan? IdleExit = null, int? Threads = null)
{
    /// <summary>The default visibility timeout: a worker's heartbeat renews its claim every 2 s, so this only has to outlast a hiccup.</summary>
    public static readonly TimeSpan DefaultVisibilityTimeout = TimeSpan.FromSeconds(30);
}

/// <summary>
/// A worker of a distributed run: reads jobs from the run's Redis stream, rebuilds each child from
/// its recipe on its own backend (base, experts and parent elites read from the run directory),
/// scores it with the run's evaluator and posts the result. It writes nothing into the run
/// directory. While it works on a job it renews its claim every 2 s; a job whose worker died is
/// taken over by another once it has been idle for the visibility timeout.
/// </summary>
public static class RunWorker
{
    /// <summary>Exit code when this worker's build or backend differs from the coordinator's.</summary>
    public const int ExitMismatch = 3;

    /// <summary>Runs until cancelled (or idle for <see cref="WorkerOptions.IdleExit"/>); returns the exit code.</summary>
    /// <param name="options">What to serve and how.</param>
    /// <param name="log">Receives one line per event (start, each job, reconnects, refusals).</param>
    /// <param name="cancellationToken">Stops the worker; its current job is left to another worker.</param>
    public static async Task<int> RunAsync(WorkerOptions options, Action<string> log, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        WorkQueue.ParseUrl(options.RedisUrl); // a bad URL fails before anything is loaded
        // A worker may start before its coordinator (a service started with the machine): it waits for the run.
        var file = await WaitForCoordinatorAsync(Path.GetFullPath(options.RunDirectory), log, cancellationToken).ConfigureAwait(false);
        if (file is null) return 0;
        var dir = RunDirectory.Open(options.RunDirectory);
        var config = dir.Info.Apply(ExperimentConfig.Parse(File.ReadAllText(dir.ConfigPath), dir.ConfigPath, dir.Info.ConfigDirectory));
        config = config with { Options = config.Options with { Seed = dir.Info.Seed } };
        if (options.Threads is { } t) config = config with { Evaluation = config.Evaluation with { Threads = t } };
        var family = ModelFamilies.Of(config);
        var splits = File.Exists(dir.SplitsPath) ? RunSplits.Read(dir.SplitsPath, config.Options.Tasks) : family.MakeSplits(config);

        using var backend = BackendSelection.Create(options.Device, config.Options.Mutation, log,
            openCuda: () => RunResidency.Open(config, options.GpuOrdinal));
        string kind = WorkerIdentity.BackendKind(backend);
        string name = options.Name ?? $"{Environment.MachineName}-{Environment.ProcessId}-{backend.Name.Replace(":", "", StringComparison.Ordinal)}";
        if (file.Build != WorkerIdentity.Build || file.Backend != kind)
        {
            log($"error: worker {name}: this is build {WorkerIdentity.Build} on {kind}, the run's coordinator is build {file.Build} on {file.Backend}; " +
                "a worker must match both to rebuild children bit for bit: refusing every job");
            return ExitMismatch;
        }
        using var models = family.LoadModels(config, backend);
        using var evaluator = family.OpenEvaluator(config, splits, backend);
        var bases = config.Options.Mutation is { Kind: MutationKind.Svd, Basis: MutationBasis.Expert }
            ? ExpertSvdCache.LoadOrCompute(dir.Path, backend, models.Base, models.Experts, config.Options.Mutation)
            : null;
        var experts = models.Experts.ToDictionary(e => e.Key, e => e.Value, StringComparer.Ordinal);
        var builder = new ChildBuilder(config.Options, backend, models.Base, models.Experts.Select(e => new Expert(e.Key, e.Value)).ToList(), dir.Elites, bases);

        await using var queue = await WorkQueue.ConnectAsync(options.RedisUrl, file.RunKey, log, TimeSpan.FromSeconds(30), cancellationToken).ConfigureAwait(false);
        await queue.EnsureGroupAsync(cancellationToken).ConfigureAwait(false);
        using var wake = await queue.SubscribeAsync(queue.JobsAdded).ConfigureAwait(false);
        log($"worker {name}: serving run {dir.Path} (key {file.RunKey}) on {backend.Name} from {options.RedisUrl}");
        var state = new WorkerState(name, backend.Name);
        using var beatStop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var beat = Task.Run(() => HeartbeatAsync(queue, state, beatStop.Token));
        long visibilityMs = (long)(options.VisibilityTimeout ?? WorkerOptions.DefaultVisibilityTimeout).TotalMilliseconds;
        var idleSince = Stopwatch.StartNew();
        IWeightSet? spare = null;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                var entry = await NextJobAsync(queue, name, visibilityMs, cancellationToken).ConfigureAwait(false);
                if (entry is not { } e)
                {
                    if (options.IdleExit is { } idle && idleSince.Elapsed > idle)
                    {
                        log($"worker {name}: no job for {idle.TotalSeconds:0} s; stopping after {state.Done} job(s)");
                        return 0;
                    }
                    // Woken when the coordinator adds a job; the timeout bounds how late a job left by a dead worker is seen.
                    await wake.WaitAsync(TimeSpan.FromMilliseconds(500), cancellationToken).ConfigureAwait(false);
                    continue;
                }
                WorkJob job;
                try { job = WorkJob.Parse(e["job"]!); }
                catch (System.Text.Json.JsonException)
                {
                    await queue.Retry(db => db.StreamAcknowledgeAsync(queue.Jobs, WorkQueue.Group, e.Id), cancellationToken).ConfigureAwait(false);
                    continue;
                }
                if (job.Build != WorkerIdentity.Build || job.Backend != kind)
                {
                    log($"error: worker {name}: job {job.Id} is for build {job.Build} on {job.Backend}, this is build {WorkerIdentity.Build} on {kind}: refusing it (another worker takes it over)");
                    return ExitMismatch;
                }
                state.Start(job.Id, e.Id!);
                var served = spare;
                spare = null; // owned by ServeAsync until it returns the next one
                (var result, spare) = await ServeAsync(job, name, backend, builder, experts, evaluator, served, cancellationToken).ConfigureAwait(false);
                await queue.Retry(async db =>
                {
                    await db.StreamAddAsync(queue.Results, "result", result.ToJson()).ConfigureAwait(false);
                    await db.StreamAcknowledgeAsync(queue.Jobs, WorkQueue.Group, e.Id).ConfigureAwait(false);
                }, cancellationToken).ConfigureAwait(false);
                queue.Notify(queue.ResultsAdded);
                state.Finish();
                idleSince.Restart();
                log(result.Error is null
                    ? string.Create(CultureInfo.InvariantCulture, $"worker {name}: {job.Id} scored [{string.Join(", ", result.Scores.Select(x => x.ToString("0.####", CultureInfo.InvariantCulture)))}] in {result.BuildSeconds + result.EvaluateSeconds:0.###} s")
                    : $"worker {name}: {job.Id} failed: {result.Error}");
            }
            return 0;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            log($"worker {name}: stopped after {state.Done} job(s)");
            return 0;
        }
        finally
        {
            await beatStop.CancelAsync().ConfigureAwait(false);
            try { await beat.ConfigureAwait(false); } catch (OperationCanceledException) { }
            spare?.Dispose();
            try { await queue.Db.KeyDeleteAsync(queue.WorkerKey(name)).ConfigureAwait(false); } catch (RedisException) { }
        }
    }

    private static async Task<DistributedRunFile?> WaitForCoordinatorAsync(string runDir, Action<string> log, CancellationToken ct)
    {
        bool said = false;
        while (true)
        {
            if (File.Exists(Path.Combine(runDir, "run.json")) && DistributedRunFile.TryRead(runDir) is { } f) return f;
            if (!said) log($"worker: {runDir} holds no distributed run yet ({RunDirectory.DistributedFileName}); waiting for a coordinator started with --workers");
            said = true;
            try { await Task.Delay(500, ct).ConfigureAwait(false); }
            catch (OperationCanceledException) { return null; }
        }
    }

    /// <summary>A new job for this consumer, else one another worker left idle past the visibility timeout, else null.</summary>
    private static async Task<StreamEntry?> NextJobAsync(WorkQueue queue, string name, long visibilityMs, CancellationToken ct)
    {
        var fresh = await queue.Retry(async db =>
        {
            try { return await db.StreamReadGroupAsync(queue.Jobs, WorkQueue.Group, name, ">", 1).ConfigureAwait(false); }
            catch (RedisServerException x) when (x.Message.StartsWith("NOGROUP", StringComparison.Ordinal))
            {
                // Redis lost its data; the coordinator makes the group again and republishes.
                await Task.Delay(200, ct).ConfigureAwait(false);
                return [];
            }
        }, ct).ConfigureAwait(false);
        if (fresh.Length > 0) return fresh[0];
        var claimed = await queue.Retry(async db =>
        {
            try { return (await db.StreamAutoClaimAsync(queue.Jobs, WorkQueue.Group, name, visibilityMs, "0-0", 1).ConfigureAwait(false)).ClaimedEntries; }
            catch (RedisServerException x) when (x.Message.StartsWith("NOGROUP", StringComparison.Ordinal)) { return []; }
        }, ct).ConfigureAwait(false);
        return claimed.Length > 0 && !claimed[0].IsNull ? claimed[0] : null;
    }

    /// <summary>
    /// Scores <paramref name="job"/>; a child is built into <paramref name="spare"/> (consumed) and
    /// returned as the next spare, so one buffer serves every job.
    /// </summary>
    private static async Task<(WorkResult Result, IWeightSet? Spare)> ServeAsync(WorkJob job, string worker, IComputeBackend backend, ChildBuilder builder,
        IReadOnlyDictionary<string, IWeightSet> experts, IRunEvaluator evaluator, IWeightSet? spare, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        IWeightSet? child = null;
        try
        {
            IWeightSet candidate;
            string? nonFinite = null, fingerprint = null;
            if (job.Kind == "expert")
            {
                candidate = job.Expert is { } n && experts.TryGetValue(n, out var w) ? w
                    : throw new ConfigurationException($"job {job.Id}: no expert '{job.Expert}' in the run");
            }
            else
            {
                // Build consumes the spare (and disposes it if it fails).
                var reuse = spare;
                spare = null;
                (child, nonFinite) = builder.Build(job.Plan, reuse);
                candidate = child;
                fingerprint = ChildFingerprint.Of(backend, child);
            }
            double build = clock.Elapsed.TotalSeconds;
            clock.Restart();
            double[] scores = new double[evaluator.TaskNames.Count];
            IReadOnlyList<TaskEvaluationStatistics>? statistics = null;
            if (nonFinite is null)
            {
                try
                {
                    scores = await evaluator.EvaluateAsync(backend, candidate, ct).ConfigureAwait(false);
                    statistics = (evaluator as IEvaluationStatisticsSource)?.TakeStatistics(candidate);
                }
                catch (NonFiniteWeightsException x)
                {
                    nonFinite = x.Message;
                }
            }
            return (new WorkResult
            {
                Run = job.Run, Id = job.Id, Recipe = job.Recipe, Worker = worker, Scores = scores, NonFinite = nonFinite, ChildFingerprint = fingerprint,
                BuildSeconds = build, EvaluateSeconds = clock.Elapsed.TotalSeconds, Statistics = statistics,
            }, child ?? spare);
        }
        catch (Exception x) when (x is not OperationCanceledException and not OutOfMemoryException)
        {
            return (new WorkResult { Run = job.Run, Id = job.Id, Recipe = job.Recipe, Worker = worker, Error = $"{x.GetType().Name}: {x.Message}" }, child ?? spare);
        }
        catch
        {
            child?.Dispose();
            spare?.Dispose();
            throw;
        }
    }

    private sealed class WorkerState(string name, string device)
    {
        public string Name { get; } = name;
        public string Device { get; } = device;
        public string? Job { get; private set; }
        public RedisValue EntryId { get; private set; }
        public int Done { get; private set; }

        public void Start(string job, RedisValue entry) => (Job, EntryId) = (job, entry);

        public void Finish()
        {
            (Job, EntryId) = (null, RedisValue.Null);
            Done++;
        }
    }

    /// <summary>Every 2 s: the worker's hash (device, job, heartbeat, done; expiring after 30 s) and a renewed claim on its job.</summary>
    private static async Task HeartbeatAsync(WorkQueue queue, WorkerState s, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var db = queue.Db;
                var key = queue.WorkerKey(s.Name);
                await db.HashSetAsync(key, [
                    new HashEntry("device", s.Device), new HashEntry("job", s.Job ?? ""),
                    new HashEntry("heartbeat", DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture)),
                    new HashEntry("done", s.Done), new HashEntry("build", WorkerIdentity.Build)]).ConfigureAwait(false);
                await db.KeyExpireAsync(key, TimeSpan.FromSeconds(30)).ConfigureAwait(false);
                var entry = s.EntryId;
                if (!entry.IsNull)
                    await db.StreamClaimIdsOnlyAsync(queue.Jobs, WorkQueue.Group, s.Name, 0, [entry]).ConfigureAwait(false);
            }
            catch (RedisException)
            {
                // The main loop reports a lost connection; the next beat tries again.
            }
            await Task.Delay(2000, ct).ConfigureAwait(false);
        }
    }
}
