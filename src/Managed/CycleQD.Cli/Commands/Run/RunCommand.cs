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
    private static readonly Option<bool> DryRun = new("--dry-run")
    {
        Description = "Check the experiment, the models and every task's environment, print what the run will cost (evaluations, prompts, tokens, storage), and write nothing.",
    };

    public static Command Create()
    {
        var cmd = new Command("run", "Start a CycleQD run: score the experts, then breed, evaluate and archive children, checkpointing every generation.");
        cmd.Arguments.Add(Experiment);
        cmd.Options.Add(Out);
        cmd.Options.Add(Generations);
        cmd.Options.Add(DeviceOption.Create());
        cmd.Options.Add(Seed);
        cmd.Options.Add(DryRun);
        cmd.SetAction(parse =>
        {
            if (parse.GetValue(DryRun))
                return RunDryRun.Execute(parse.GetRequiredValue(Experiment), parse.GetValue(Generations), parse.GetValue(Seed), parse.InvocationConfiguration.Output);
            using var session = RunSession.Start(parse.GetRequiredValue(Experiment), parse.GetValue(Out), parse.GetValue(Generations), parse.GetValue(Seed),
                DeviceOption.Parse(parse), parse.InvocationConfiguration.Error.WriteLine);
            return RunLoop.Execute(session, parse.InvocationConfiguration.Output);
        });
        return cmd;
    }
}
