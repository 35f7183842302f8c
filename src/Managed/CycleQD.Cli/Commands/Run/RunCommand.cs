using System.CommandLine;
using CycleQD.Runs;

namespace CycleQD.Cli.Commands.Run;

/// <summary>`cycleqd run EXPERIMENT.yaml [--out DIR] [--generations N] [--seed S]`.</summary>
internal static class RunCommand
{
    private static readonly Argument<string> Experiment = new("EXPERIMENT") { Description = "Experiment file (YAML); see examples/synthetic.yaml." };
    private static readonly Option<string?> Out = new("--out", "-o") { Description = "Run directory to create (absent or empty); default runs/NAME-DATE-TIME." };
    internal static readonly Option<int?> Generations = NumericOptions.OptionalWhole<int>("--generations", "Total generations to run (default: the experiment's).", NumericRange.AtLeast(0), "-n");
    private static readonly Option<ulong?> Seed = NumericOptions.OptionalWhole<ulong>("--seed", "Run seed (default: the experiment's).");

    public static Command Create()
    {
        var cmd = new Command("run", "Start a CycleQD run: score the experts, then breed, evaluate and archive children, checkpointing every generation.");
        cmd.Arguments.Add(Experiment);
        cmd.Options.Add(Out);
        cmd.Options.Add(Generations);
        cmd.Options.Add(DeviceOption.Create());
        cmd.Options.Add(Seed);
        cmd.SetAction(parse =>
        {
            using var session = RunSession.Start(parse.GetRequiredValue(Experiment), parse.GetValue(Out), parse.GetValue(Generations), parse.GetValue(Seed),
                DeviceOption.Parse(parse), parse.InvocationConfiguration.Error.WriteLine);
            return RunLoop.Execute(session, parse.InvocationConfiguration.Output);
        });
        return cmd;
    }
}
