using System.CommandLine;
using System.Globalization;
using CycleQD.Core;
using CycleQD.Runs;
using CycleQD.Runs.Distributed;

namespace CycleQD.Cli.Commands.Worker;

/// <summary>`cycleqd worker --redis URL --run DIR [--device cpu|cuda[:N]]`: one evaluation worker of a distributed run.</summary>
internal static class WorkerCommand
{
    private static readonly Option<string> Redis = new("--redis") { Description = "redis://HOST:PORT[/DB] the run's coordinator was started with (--workers).", Required = true };
    private static readonly Option<string> Run = new("--run") { Description = "The run directory, on a file system shared with the coordinator (read only here).", Required = true };
    private static readonly Option<string> Device = new("--device")
    {
        Description = "Backend: cpu, or cuda / cuda:N for GPU N; must be the coordinator's kind.",
        DefaultValueFactory = _ => "cpu",
    };
    private static readonly Option<string?> Name = new("--name") { Description = "Worker name shown by `cycleqd workers` (default HOST-PID-DEVICE)." };
    private static readonly Option<int?> Visibility = NumericOptions.OptionalWhole<int>("--visibility-timeout",
        "Seconds a job of a worker that stopped beating stays with it before another worker takes it over (default 30).", NumericRange.AtLeast(1));
    private static readonly Option<int?> IdleExit = NumericOptions.OptionalWhole<int>("--idle-exit",
        "Stop after this many seconds without a job (default: run until stopped).", NumericRange.AtLeast(1));
    private static readonly Option<int?> Threads = Commands.Run.RunCommand.CreateThreads();

    public static Command Create()
    {
        var cmd = new Command("worker", "Serve a distributed run: rebuild each child from its recipe, score it, send the scores back; Ctrl-C or SIGTERM stops (the job in hand goes to another worker).");
        foreach (var o in new Option[] { Redis, Run, Device, Name, Visibility, IdleExit, Threads }) cmd.Options.Add(o);
        cmd.SetAction(async (parse, ct) =>
        {
            var (device, ordinal) = ParseDevice(parse.GetValue(Device) ?? "cpu");
            int? vis = parse.GetValue(Visibility), idle = parse.GetValue(IdleExit);
            var error = parse.InvocationConfiguration.Error;
            var options = new WorkerOptions(parse.GetRequiredValue(Redis), parse.GetRequiredValue(Run), device, ordinal, parse.GetValue(Name),
                vis is { } v ? TimeSpan.FromSeconds(v) : null, idle is { } i ? TimeSpan.FromSeconds(i) : null, parse.GetValue(Threads));
            ThreadsOption.ApplyToOpenBlas(parse.GetValue(Threads));
            return await RunWorker.RunAsync(options, line => { lock (error) error.WriteLine(line); }, ct).ConfigureAwait(false);
        });
        return cmd;
    }

    /// <summary>"cpu", "cuda", "cuda:N".</summary>
    internal static (ComputeDevice Device, int Ordinal) ParseDevice(string text)
    {
        if (text == "cpu") return (ComputeDevice.Cpu, 0);
        if (text is "cuda" or "gpu") return (ComputeDevice.Cuda, 0);
        if (text.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(text[5..], NumberStyles.None, CultureInfo.InvariantCulture, out int n))
            return (ComputeDevice.Cuda, n);
        throw new ConfigurationException($"--device {text}: expected cpu, cuda or cuda:N");
    }
}
