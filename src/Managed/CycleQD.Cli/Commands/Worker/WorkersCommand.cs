using System.CommandLine;
using System.Globalization;
using CycleQD.Runs.Distributed;

namespace CycleQD.Cli.Commands.Worker;

/// <summary>`cycleqd workers --redis URL`: the workers of every run on that Redis, their device, job, heartbeat and jobs done.</summary>
internal static class WorkersCommand
{
    private static readonly Option<string> Redis = new("--redis") { Description = "redis://HOST:PORT[/DB].", Required = true };

    public static Command Create()
    {
        var cmd = new Command("workers", "List the workers of the distributed runs on a Redis: device, current job, last heartbeat, jobs done; and each run's jobs waiting or in progress.");
        cmd.Options.Add(Redis);
        cmd.SetAction(async (parse, ct) =>
        {
            var o = parse.InvocationConfiguration.Output;
            var view = await WorkerListing.ReadAsync(parse.GetRequiredValue(Redis), ct).ConfigureAwait(false);
            if (view.Runs.Count == 0)
            {
                o.WriteLine($"no distributed run on {parse.GetRequiredValue(Redis)}");
                return 0;
            }
            var table = new TextTable("run", "worker", "device", "job", "heartbeat", "done");
            foreach (var w in view.Workers)
                table.Add(w.Run, w.Name, w.Device, w.Job.Length == 0 ? "idle" : w.Job,
                    w.Heartbeat is { } h ? (DateTime.UtcNow - h).TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture) + " s ago" : "?", w.Done.ToString(CultureInfo.InvariantCulture));
            table.Write(o);
            foreach (var r in view.Runs)
                o.WriteLine($"run {r.Key}: {r.Waiting} job(s) not yet taken, {r.Pending} in progress (taken, not acknowledged)");
            return 0;
        });
        return cmd;
    }
}
