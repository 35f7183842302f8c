using System.CommandLine;
using CycleQD.Runs.Export;

namespace CycleQD.Cli.Commands.Export;

/// <summary>`cycleqd export RUN_DIR --out DIR [--task T [--cell i,j] | --final]`: one model of a run as a Hugging Face folder.</summary>
internal static class ExportCommand
{
    private static readonly Argument<string> RunDir = new("RUN_DIR") { Description = "Run directory made by cycleqd run (finished or still running)." };

    private static readonly Option<string> Out = new("--out", "-o") { Description = "Output model folder (absent or empty).", Required = true };

    private static readonly Option<string?> Task = new("--task") { Description = "The archive (task) whose elite to export; without --cell, its best elite. A run without the cycle has one archive, mean." };

    private static readonly Option<string?> Cell = new("--cell") { Description = "The elite's cell: 0-based bin indices, one per behaviour characteristic, as in archive.json (e.g. 3,7)." };

    private static readonly Option<bool> Final = new("--final") { Description = "Export the run's final model (final/model.safetensors) instead of an elite." };

    public static Command Create()
    {
        var cmd = new Command("export", "Write one elite of a run, or its final model, as a Hugging Face folder (sharded safetensors, config, tokenizer, model card).");
        cmd.Arguments.Add(RunDir);
        foreach (var o in new Option[] { Out, Task, Cell, Final, ModelFolderOptions.MaxShardSize }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            string? task = parse.GetValue(Task);
            string? cell = parse.GetValue(Cell);
            bool final = parse.GetValue(Final);
            if (final && (task != null || cell != null)) throw new CliUsageException("--final exports the final model; it cannot be combined with --task or --cell");
            if (!final && task is null)
                throw new CliUsageException(cell is null ? "choose the model: --task T [--cell i,j] for an elite, or --final" : "--cell needs --task (the archive the cell belongs to)");
            var selection = new ExportSelection(task, cell is null ? null : ExportSelection.ParseCell(cell), final);
            var result = RunExport.Write(parse.GetRequiredValue(RunDir), selection, parse.GetRequiredValue(Out), ModelFolderOptions.ParseShardSize(parse));
            var o = parse.InvocationConfiguration.Output;
            o.WriteLine($"exported {result.Description} to {result.Directory}");
            foreach (var f in result.Files) o.WriteLine("  " + Path.GetFileName(f));
            return 0;
        });
        return cmd;
    }
}
