using System.CommandLine;
using CycleQD.Cli.Commands.Worker;
using CycleQD.Runs;

namespace CycleQD.Cli.Commands.Run;

/// <summary>`cycleqd run EXPERIMENT.yaml [--out DIR] [--generations N] [--seed S] [--limit N] [--no-final] [--base-dir DIR]`.</summary>
internal static class RunCommand
{
    private static readonly Argument<string> Experiment = new("EXPERIMENT")
    {
        Description = "Experiment file (YAML); see examples/synthetic.yaml. Relative paths in it (models, data folders) are resolved against the file's own folder, not the current one (see --base-dir).",
    };
    private static readonly Option<string?> BaseDir = new("--base-dir")
    {
        Description = "Resolve the experiment's relative paths against DIR instead of the experiment file's folder (kept for resume).",
    };
    private static readonly Option<int?> Limit = NumericOptions.OptionalWhole<int>("--limit",
        "Score only the first N samples of every task and split (replaces evaluation.limit; a quick try; kept for resume).", NumericRange.AtLeast(1));
    private static readonly Option<bool> NoFinal = new("--no-final")
    {
        Description = "Skip the final stage (final merge and test-split report) after the search; kept for resume.",
    };
    private static readonly Option<string?> Out = new("--out", "-o") { Description = "Run directory to create (absent or empty); default runs/NAME-DATE-TIME." };
    internal static readonly Option<int?> Generations = NumericOptions.OptionalWhole<int>("--generations", "Total generations to run (default: the experiment's).", NumericRange.AtLeast(0), "-n");
    private static readonly Option<ulong?> Seed = NumericOptions.OptionalWhole<ulong>("--seed", "Run seed (default: the experiment's).");
    private static readonly Option<bool> DryRun = new("--dry-run")
    {
        Description = "Check the experiment, the models and every task's environment, print what the run will cost (evaluations, prompts, tokens, storage), and write nothing.",
    };

    /// <summary>--threads of run and resume.</summary>
    internal static Option<int?> CreateThreads() => ThreadsOption.Create(
        "ONNX Runtime intra-op threads of every model evaluation (replaces evaluation.threads) and OpenBLAS threads of the CPU backend's SVD; the CPU merge kernels use the .NET thread pool");

    private static readonly Option<int?> Threads = CreateThreads();

    private static readonly Option<string?> Workers = WorkersOption.Create();

    public static Command Create()
    {
        var cmd = new Command("run", "Start a CycleQD run: score the experts, then breed, evaluate and archive children, checkpointing every generation.");
        cmd.Arguments.Add(Experiment);
        cmd.Options.Add(Out);
        cmd.Options.Add(Generations);
        cmd.Options.Add(DeviceOption.Create());
        cmd.Options.Add(Seed);
        cmd.Options.Add(DryRun);
        cmd.Options.Add(BaseDir);
        cmd.Options.Add(Limit);
        cmd.Options.Add(NoFinal);
        cmd.Options.Add(Threads);
        cmd.Options.Add(RunOutput.Quiet);
        cmd.Options.Add(RunOutput.Json);
        cmd.Options.Add(Workers);
        cmd.SetAction(parse =>
        {
            var mode = RunOutput.Mode(parse);
            var overrides = new RunOverrides(parse.GetValue(BaseDir), parse.GetValue(Limit), parse.GetValue(NoFinal), parse.GetValue(Threads));
            ThreadsOption.ApplyToOpenBlas(overrides.Threads);
            if (parse.GetValue(DryRun))
                return RunDryRun.Execute(parse.GetRequiredValue(Experiment), parse.GetValue(Generations), parse.GetValue(Seed), parse.InvocationConfiguration.Output, overrides, DeviceOption.Parse(parse));
            var device = DeviceOption.Parse(parse);
            return WorkersOption.With(parse, (workers, started) =>
            {
                using var session = RunSession.Start(parse.GetRequiredValue(Experiment), parse.GetValue(Out), parse.GetValue(Generations), parse.GetValue(Seed),
                    device, parse.InvocationConfiguration.Error.WriteLine, overrides, workers);
                started(session);
                return RunOutput.Execute(session, mode, parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error);
            });
        });
        return cmd;
    }
}
