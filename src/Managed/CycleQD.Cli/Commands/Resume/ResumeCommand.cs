using System.CommandLine;
using CycleQD.Cli.Commands.Run;
using CycleQD.Cli.Commands.Worker;
using CycleQD.Runs;

namespace CycleQD.Cli.Commands.Resume;

/// <summary>`cycleqd resume DIR [--generations N]`.</summary>
internal static class ResumeCommand
{
    private static readonly Argument<string> RunDir = new("DIR") { Description = "Run directory made by cycleqd run." };
    private static readonly Option<int?> Generations = NumericOptions.OptionalWhole<int>("--generations", "Total generations to reach (default: the run's target).", NumericRange.AtLeast(0), "-n");

    private static readonly Option<int?> Threads = RunCommand.CreateThreads();

    private static readonly Option<string?> Workers = WorkersOption.Create();

    public static Command Create()
    {
        var cmd = new Command("resume", "Continue a run from its last checkpoint; the result is identical to an uninterrupted run.");
        cmd.Arguments.Add(RunDir);
        cmd.Options.Add(Generations);
        cmd.Options.Add(DeviceOption.Create());
        cmd.Options.Add(Threads);
        cmd.Options.Add(RunOutput.Quiet);
        cmd.Options.Add(RunOutput.Json);
        cmd.Options.Add(Workers);
        cmd.SetAction(parse =>
        {
            var mode = RunOutput.Mode(parse);
            ThreadsOption.ApplyToOpenBlas(parse.GetValue(Threads));
            var device = DeviceOption.Parse(parse);
            return WorkersOption.With(parse, (workers, started) =>
            {
                using var session = RunSession.Resume(parse.GetRequiredValue(RunDir), parse.GetValue(Generations),
                    device, parse.InvocationConfiguration.Error.WriteLine, parse.GetValue(Threads), workers);
                started(session);
                return RunOutput.Execute(session, mode, parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error);
            });
        });
        return cmd;
    }
}
