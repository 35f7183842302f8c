using System.Globalization;
using CycleQD.Core;
using StackExchange.Redis;

namespace CycleQD.Runs.Distributed;

/// <summary>
/// The Redis side of a distributed run, on Redis streams with one consumer group:
/// <code>
/// cqd:RUN:jobs       stream of jobs (field "job": <see cref="WorkJob"/> JSON); group "workers"
/// cqd:RUN:results    stream of results (field "result": <see cref="WorkResult"/> JSON)
/// cqd:RUN:published  hash job id → recipe of the job the coordinator published last
/// cqd:RUN:epoch      set by the coordinator; gone means Redis lost its data (restarted without persistence)
/// cqd:RUN:worker:W   hash of worker W: device, job, heartbeat (UTC), done; expires when W stops beating
/// </code>
/// A worker reads new jobs with XREADGROUP, keeps the one it works on claimed (XCLAIM to itself
/// resets its idle time) and acknowledges it after posting the result; a job whose worker died
/// stays pending and idles until another worker takes it over (XAUTOCLAIM past the visibility
/// timeout). Redis is never the store of record: the run directory is; everything here can be
/// rebuilt from it. Every call retries through connection loss with backoff and says so once.
/// </summary>
internal sealed class WorkQueue : IAsyncDisposable
{
    public const string Group = "workers";
    private readonly ConnectionMultiplexer _redis;
    private readonly Action<string>? _notice;
    private int _lost;

    public string Run { get; }
    public string Url { get; }
    public RedisKey Jobs => $"cqd:{Run}:jobs";
    public RedisKey Results => $"cqd:{Run}:results";
    public RedisKey Published => $"cqd:{Run}:published";
    public RedisKey Epoch => $"cqd:{Run}:epoch";
    public RedisKey WorkerKey(string name) => $"cqd:{Run}:worker:{name}";

    /// <summary>Published after a job is added: wakes idle workers at once instead of at their next poll.</summary>
    public RedisChannel JobsAdded => RedisChannel.Literal($"cqd:{Run}:jobs-added");

    /// <summary>Published after a result is added: wakes the coordinator at once.</summary>
    public RedisChannel ResultsAdded => RedisChannel.Literal($"cqd:{Run}:results-added");

    /// <summary>
    /// A signal that <paramref name="channel"/> has news. Pub/sub messages are lost while the
    /// connection is down, so every waiter also polls on a timeout; the signal only cuts the latency.
    /// </summary>
    public async Task<SemaphoreSlim> SubscribeAsync(RedisChannel channel)
    {
        var wake = new SemaphoreSlim(0, 1);
        await _redis.GetSubscriber().SubscribeAsync(channel, (_, _) =>
        {
            try { wake.Release(); } catch (SemaphoreFullException) { }
        }).ConfigureAwait(false);
        return wake;
    }

    /// <summary>Tells subscribers of <paramref name="channel"/> (fire and forget: a lost message costs one poll interval).</summary>
    public void Notify(RedisChannel channel)
    {
        try { _redis.GetSubscriber().Publish(channel, "1", CommandFlags.FireAndForget); }
        catch (RedisException) { }
    }

    private WorkQueue(ConnectionMultiplexer redis, string url, string run, Action<string>? notice)
    {
        _redis = redis;
        Url = url;
        Run = run;
        _notice = notice;
    }

    /// <summary>Parses redis://HOST:PORT[/DB] (also "HOST:PORT") into StackExchange.Redis options.</summary>
    /// <exception cref="ConfigurationException">anything else.</exception>
    public static ConfigurationOptions ParseUrl(string url)
    {
        string rest = url.StartsWith("redis://", StringComparison.Ordinal) ? url["redis://".Length..] : url;
        int db = 0;
        int slash = rest.IndexOf('/', StringComparison.Ordinal);
        if (slash >= 0)
        {
            if (!int.TryParse(rest[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out db))
                throw new ConfigurationException($"{url}: the database after '/' must be a number (redis://HOST:PORT[/DB])");
            rest = rest[..slash];
        }
        int colon = rest.LastIndexOf(':');
        if (rest.Length == 0 || colon == 0 || rest.Contains('@', StringComparison.Ordinal)
            || (colon > 0 && !int.TryParse(rest[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out _)))
            throw new ConfigurationException($"{url}: expected redis://HOST:PORT[/DB]");
        var o = new ConfigurationOptions
        {
            AbortOnConnectFail = false,
            DefaultDatabase = db,
            ConnectTimeout = 5000,
            SyncTimeout = 10000,
            AsyncTimeout = 10000,
            ReconnectRetryPolicy = new ExponentialRetry(250, 5000),
            ClientName = "cycleqd",
        };
        o.EndPoints.Add(colon > 0 ? rest : rest + ":6379");
        return o;
    }

    /// <summary>Connects (waiting up to <paramref name="wait"/> for Redis to answer) to the queues of run <paramref name="run"/>.</summary>
    /// <exception cref="ConfigurationException">a bad URL, or Redis not reachable in time (the message names it).</exception>
    public static async Task<WorkQueue> ConnectAsync(string url, string run, Action<string>? notice, TimeSpan wait, CancellationToken ct)
    {
        var options = ParseUrl(url);
        var redis = await ConnectionMultiplexer.ConnectAsync(options).ConfigureAwait(false);
        var q = new WorkQueue(redis, url, run, notice);
        var deadline = DateTime.UtcNow + wait;
        while (true)
        {
            try
            {
                await redis.GetDatabase().PingAsync().ConfigureAwait(false);
                return q;
            }
            catch (Exception e) when (e is RedisConnectionException or RedisTimeoutException)
            {
                if (DateTime.UtcNow > deadline)
                {
                    await redis.DisposeAsync().ConfigureAwait(false);
                    throw new ConfigurationException($"{url}: Redis does not answer ({e.Message})");
                }
                await Task.Delay(250, ct).ConfigureAwait(false);
            }
        }
    }

    public IDatabase Db => _redis.GetDatabase();

    /// <summary>The server (for SCAN over keys).</summary>
    public IServer Server => _redis.GetServers()[0];

    /// <summary>Runs <paramref name="call"/>, retrying through a lost connection with backoff; says once that Redis is gone and once that it is back.</summary>
    public async Task<T> Retry<T>(Func<IDatabase, Task<T>> call, CancellationToken ct)
    {
        int delay = 100;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            try
            {
                var r = await call(Db).ConfigureAwait(false);
                if (Interlocked.Exchange(ref _lost, 0) == 1) _notice?.Invoke($"redis: {Url} is back");
                return r;
            }
            catch (Exception e) when (e is RedisConnectionException or RedisTimeoutException
                                      || (e is RedisServerException s && s.Message.StartsWith("LOADING", StringComparison.Ordinal)))
            {
                if (Interlocked.Exchange(ref _lost, 1) == 0) _notice?.Invoke($"redis: lost {Url} ({e.GetType().Name}); retrying with backoff");
                await Task.Delay(delay, ct).ConfigureAwait(false);
                delay = Math.Min(delay * 2, 5000);
            }
        }
    }

    public Task Retry(Func<IDatabase, Task> call, CancellationToken ct) => Retry(async db => { await call(db).ConfigureAwait(false); return true; }, ct);

    /// <summary>Creates the stream and its group when absent (a fresh Redis, or one that lost its data).</summary>
    public Task EnsureGroupAsync(CancellationToken ct) => Retry(async db =>
    {
        try { await db.StreamCreateConsumerGroupAsync(Jobs, Group, "0-0", createStream: true).ConfigureAwait(false); }
        catch (RedisServerException e) when (e.Message.StartsWith("BUSYGROUP", StringComparison.Ordinal)) { }
    }, ct);

    public async ValueTask DisposeAsync() => await _redis.DisposeAsync().ConfigureAwait(false);
}
