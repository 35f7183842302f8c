using System.Globalization;
using StackExchange.Redis;

namespace CycleQD.Runs.Distributed;

/// <summary>One worker as its heartbeat hash shows it.</summary>
/// <param name="Run">The run key.</param>
/// <param name="Name">Worker name.</param>
/// <param name="Device">Its backend ("cpu", "cuda:1").</param>
/// <param name="Job">The job in hand ("gen-12"), empty when idle.</param>
/// <param name="Heartbeat">Its last heartbeat (UTC), null if unreadable.</param>
/// <param name="Done">Jobs it finished.</param>
public sealed record WorkerStatus(string Run, string Name, string Device, string Job, DateTime? Heartbeat, long Done);

/// <summary>A run's queue: jobs no worker has taken yet, and jobs taken but not acknowledged.</summary>
/// <param name="Key">The run key.</param>
/// <param name="Waiting">Jobs not yet delivered to any worker.</param>
/// <param name="Pending">Jobs delivered and not acknowledged (in progress, or left by a dead worker).</param>
public sealed record RunQueueStatus(string Key, long Waiting, long Pending);

/// <summary>What <c>cycleqd workers</c> shows: every run with queues on a Redis and its live workers.</summary>
/// <param name="Workers">Workers whose heartbeat has not expired, by run then name.</param>
/// <param name="Runs">The runs' queues.</param>
public sealed record WorkerListing(IReadOnlyList<WorkerStatus> Workers, IReadOnlyList<RunQueueStatus> Runs)
{
    /// <summary>Reads the listing from <paramref name="url"/> (redis://HOST:PORT[/DB]).</summary>
    /// <exception cref="Core.ConfigurationException">a bad URL or a Redis that does not answer.</exception>
    public static async Task<WorkerListing> ReadAsync(string url, CancellationToken ct)
    {
        await using var q = await WorkQueue.ConnectAsync(url, "*", null, TimeSpan.FromSeconds(5), ct).ConfigureAwait(false);
        var server = q.Server;
        var workers = new List<WorkerStatus>();
        var runs = new List<RunQueueStatus>();
        await foreach (var key in server.KeysAsync(q.Db.Database, "cqd:*:worker:*").WithCancellation(ct).ConfigureAwait(false))
        {
            var parts = ((string)key!).Split(':', 4);
            var h = (await q.Db.HashGetAllAsync(key).ConfigureAwait(false)).ToDictionary(e => (string)e.Name!, e => (string?)e.Value ?? "");
            workers.Add(new WorkerStatus(parts[1], parts[3], h.GetValueOrDefault("device", "?"), h.GetValueOrDefault("job", ""),
                DateTime.TryParse(h.GetValueOrDefault("heartbeat", ""), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var t) ? t : null,
                long.TryParse(h.GetValueOrDefault("done", "0"), NumberStyles.None, CultureInfo.InvariantCulture, out long d) ? d : 0));
        }
        await foreach (var key in server.KeysAsync(q.Db.Database, "cqd:*:jobs").WithCancellation(ct).ConfigureAwait(false))
        {
            string run = ((string)key!).Split(':')[1];
            long pending = 0, waiting = 0;
            try
            {
                var groups = await q.Db.StreamGroupInfoAsync(key).ConfigureAwait(false);
                var g = groups.FirstOrDefault(x => x.Name == WorkQueue.Group);
                pending = g.PendingMessageCount;
                waiting = g.Lag ?? 0;
            }
            catch (RedisServerException) { }
            runs.Add(new RunQueueStatus(run, waiting, pending));
        }
        return new WorkerListing([.. workers.OrderBy(w => w.Run, StringComparer.Ordinal).ThenBy(w => w.Name, StringComparer.Ordinal)],
            [.. runs.OrderBy(r => r.Key, StringComparer.Ordinal)]);
    }
}
