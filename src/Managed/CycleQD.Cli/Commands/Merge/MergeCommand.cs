using System.CommandLine;
using System.Globalization;
using CycleQD.Runs.Merging;

namespace CycleQD.Cli.Commands.Merge;

/// <summary>`cycleqd merge CONFIG.yaml --out DIR`: a one-shot merge described by a mergekit-style YAML file.</summary>
internal static class MergeCommand
{
    private static readonly Argument<string> Config = new("CONFIG")
    {
        Description = "Merge file (mergekit YAML: merge_method, base_model, models with weight/density, parameters, dtype).",
    };

    private static readonly Option<string> Out = new("--out", "-o") { Description = "Output model folder (absent or empty).", Required = true };

    private static readonly Option<int?> Threads = ThreadsOption.CreateRefused(ThreadsOption.ManagedLoops);

    public static Command Create()
    {
        var cmd = new Command("merge", "Merge models with linear, task_arithmetic, ties, dare_linear or dare_ties into a Hugging Face folder with a model card.");
        cmd.Arguments.Add(Config);
        cmd.Options.Add(Out);
        cmd.Options.Add(ModelFolderOptions.MaxShardSize);
        cmd.Options.Add(ModelFolderOptions.Scores);
        cmd.Options.Add(ModelFolderOptions.NoHash);
        cmd.Options.Add(Threads);
        cmd.SetAction(parse =>
        {
            ThreadsOption.Refuse(parse.GetValue(Threads), ThreadsOption.ManagedLoops);
            var o = parse.InvocationConfiguration.Output;
            var config = MergeConfig.Load(parse.GetRequiredValue(Config));
            // One line per 10 % of the values merged: an 8B merge takes minutes.
            var clock = System.Diagnostics.Stopwatch.StartNew();
            int lastStep = 0;
            void Progress(int tensors, int allTensors, long values, long allValues)
            {
                int step = allValues == 0 ? 10 : (int)(10 * values / allValues);
                if (step <= lastStep && tensors < allTensors) return;
                lastStep = step;
                o.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"merging: {tensors}/{allTensors} tensors, {100.0 * values / Math.Max(1, allValues):F0} % of the values, {clock.Elapsed.TotalSeconds:F1} s"));
            }
            var options = new MergeOutputOptions(ModelFolderOptions.ParseShardSize(parse), config.Text,
                ModelFolderOptions.ReadScores(parse.GetValue(ModelFolderOptions.Scores)), !parse.GetValue(ModelFolderOptions.NoHash), Progress);
            MergeOutputResult result;
            try
            {
                result = MergeOutput.Write(config.Spec, parse.GetRequiredValue(Out), options);
            }
            catch (ArgumentException e)
            {
                throw new CliUsageException($"{config.SourcePath}: {e.Message}");
            }
            o.WriteLine($"{config.Spec.MethodName}: merged {result.Tensors} tensors ({result.Elements.ToString("N0", CultureInfo.InvariantCulture)} values) into {result.Directory}");
            foreach (var f in result.Files) o.WriteLine("  " + Path.GetFileName(f));
            return 0;
        });
        return cmd;
    }
}
