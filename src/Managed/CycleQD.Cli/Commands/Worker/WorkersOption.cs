using System.CommandLine;
using System.Globalization;
using CycleQD.Core;
using CycleQD.Runs;

namespace CycleQD.Cli.Commands.Worker;

/// <summary>`--workers redis://HOST:PORT[/DB] | local[:N]` of run and resume.</summary>
internal static class WorkersOption
{
    private const string Name = "--workers";

    public static Option<string?> Create() => new(Name)
    {
        Description = "Spread evaluation over workers: redis://HOST:PORT[/DB] (start workers with `cycleqd worker`), or local[:N] " +
                      "(a private redis-server and N workers on this machine: one per GPU with --device cuda, else 1).",
    };

    /// <summary>What the value asks for: a Redis URL, or a local cluster of N workers (null: one per GPU or 1).</summary>
    /// <exception cref="ConfigurationException">a value that is neither.</exception>
    public static (string? Url, bool Local, int? Count)? Parse(ParseResult parse)
    {
        string? v = parse.GetValue<string?>(Name);
        if (v is null) return null;
        if (v == "local") return (null, true, null);
        if (v.StartsWith("local:", StringComparison.Ordinal))
        {
            if (!int.TryParse(v["local:".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1 || n > 64)
                throw new ConfigurationException($"--workers {v}: local:N needs N between 1 and 64");
            return (null, true, n);
        }
        Runs.Distributed.WorkerUrls.Check(v);
        return (v, false, null);
    }

    /// <summary>
    /// Runs <paramref name="body"/> with the distributed options the value asks for; a local cluster
    /// is started around it (its workers once the run directory exists) and stopped after it.
    /// </summary>
    public static int With(ParseResult parse, Func<DistributedOptions?, Action<RunSession>, int> body)
    {
        var w = Parse(parse);
        if (w is null) return body(null, _ => { });
        if (!w.Value.Local) return body(new DistributedOptions(w.Value.Url!), _ => { });
        using var cluster = LocalCluster.StartRedis(parse.InvocationConfiguration.Error.WriteLine);
        return body(new DistributedOptions(cluster.Url), session => cluster.StartWorkers(session.Directory, w.Value.Count, session.BackendName));
    }
}
