using System.Globalization;
using System.Text;
using System.Text.Json;
using CycleQD.Core.Archives;
using CycleQD.Runs.Families;
using CycleQD.Runs.Merging;
using CycleQD.Tensors;

namespace CycleQD.Runs.Export;

/// <summary>Which model of a run to export.</summary>
/// <param name="Task">An archive's task (with <paramref name="Cell"/>: that cell's elite; without: the archive's best elite); null with <paramref name="Final"/>.</param>
/// <param name="Cell">Cell indices, one per behaviour characteristic, 0-based as in archive.json; null for the best elite.</param>
/// <param name="Final">The run's final model (final/model.safetensors).</param>
public sealed record ExportSelection(string? Task, IReadOnlyList<int>? Cell, bool Final)
{
    /// <summary>Parses "i,j" (0-based cell indices).</summary>
    /// <exception cref="RunDirectoryException">not a comma-separated list of non-negative integers.</exception>
    public static IReadOnlyList<int> ParseCell(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var cell = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out cell[i]))
                throw new RunDirectoryException($"--cell '{text}': expected comma-separated cell indices, e.g. 3,7 (0-based, one per behaviour characteristic)");
        return cell;
    }
}

/// <summary>What <see cref="RunExport.Write"/> produced.</summary>
/// <param name="Directory">The output folder.</param>
/// <param name="Files">Files written, weights first, README.md last.</param>
/// <param name="Description">One line naming the exported model (e.g. "elite 3f2a… of tinyskills/db, cell (4, 9)").</param>
public sealed record ExportResult(string Directory, IReadOnlyList<string> Files, string Description);

/// <summary>
/// Writes one model of a run directory (finished or still running) as a ready Hugging Face folder:
/// an archive's elite, or the run's final model. The final model's contract:
/// <c>RUN_DIR/final/model.safetensors</c> (the base's tensor names, shapes and dtypes) and
/// <c>RUN_DIR/final/final.json</c> (FinalRecord: elites, weights, search, scores), shown in the card.
/// Weights are copied byte for byte; config.json and the files the run's model family carries
/// (<see cref="IModelFamily.CarriedFiles"/>: tokenizer files, preprocessor settings) come from the run's base model.
/// </summary>
public static class RunExport
{
    /// <summary>Exports <paramref name="selection"/> of run <paramref name="runDirectory"/> into <paramref name="outDirectory"/> (absent or empty).</summary>
    /// <exception cref="RunDirectoryException">not a run, no such task, empty cell, bad cell, no final model, missing elite file, or an output folder that is not empty.</exception>
    /// <exception cref="TensorFormatException">the base model folder, or the exported weights, cannot be used.</exception>
    public static ExportResult Write(string runDirectory, ExportSelection selection, string outDirectory, long maxShardBytes = SafetensorsWriter.DefaultMaxShardBytes)
    {
        var run = RunDirectory.Open(runDirectory);
        var config = ExperimentConfig.Parse(File.ReadAllText(run.ConfigPath), run.ConfigPath, run.Info.ConfigDirectory);
        if (config.Model.BasePath is null)
            throw new RunDirectoryException($"{run.Path}: a synthetic run; its models have no config.json or tokenizer to export");
        if (!System.IO.Directory.Exists(config.Model.BasePath))
            throw new RunDirectoryException($"{run.Path}: the base model {config.Model.BasePath} is not a model folder (config.json and its companion files are copied from it)");
        // The run's family checks the base folder and says what an exported model carries (Llama: tokenizer; SAM: preprocessor settings).
        var baseFolder = ModelFamilies.Of(config).CarriedFiles(config.Model.BasePath);

        string weightsPath;
        string description;
        var card = new ModelCardText(config.Name, FinalModelCard.FolderName(config.Model.BasePath), "merge", "cycleqd");
        if (selection.Final)
        {
            string final = run.FinalModelPath;
            if (!File.Exists(final))
                throw new RunDirectoryException($"{run.Path} has no final model (final/model.safetensors); the final merge writes it when the search has finished. Export an elite with --task T [--cell i,j]");
            weightsPath = final;
            description = "the final model";
            FinalModelCard.AddSummary(card, run, config);
        }
        else
        {
            EliteInfo elite;
            string path;
            try
            {
                (elite, path) = FindElite(run, config, selection);
            }
            catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new RunDirectoryException($"{run.ArchivePath}: not a readable archive file ({e.Message})");
            }
            weightsPath = path;
            description = elite.Describe();
            card.Paragraph($"An elite of the CycleQD run `{FinalModelCard.FolderName(run.Path)}`: {description}, " +
                           (elite.Generation < 0 ? "one of the experts the search started from" : $"made at generation {elite.Generation}") +
                           $" (the run had completed {elite.RunGenerations} generations when it was exported).");
            card.Heading("Scores (the run's evaluation split)");
            card.Table(["task", "score", "role"], elite.Scores.Select(kv => (IReadOnlyList<string>)[kv.Key,
                kv.Value is { } v ? ModelCardText.Number(v) : "not scored",
                kv.Key == elite.Task ? "quality" : elite.Bc.Any(b => b.Task == kv.Key) ? "behaviour characteristic" : ""]));
            card.Heading("Cell");
            card.Table(["behaviour characteristic", "bin", "scores in the bin"], elite.Bc.Select((b, d) =>
            {
                // Intervals are closed on the right and the end bins take the scores beyond the bounds (BinSpec).
                var edges = new BinSpec(b.Lower, b.Upper, b.Bins).Edges();
                int i = elite.Cell[d];
                string range = b.Bins == 1 ? "all" : i == 0 ? $"≤ {ModelCardText.Number(edges[1])}"
                    : i == b.Bins - 1 ? $"> {ModelCardText.Number(edges[i])}" : $"({ModelCardText.Number(edges[i])}, {ModelCardText.Number(edges[i + 1])}]";
                return (IReadOnlyList<string>)[b.Task, $"{i} of 0–{b.Bins - 1}", range];
            }));
        }
        card.Heading("Run");
        card.Table(["", ""], [
            ["run directory", FinalModelCard.FolderName(run.Path)], ["seed", run.Info.Seed.ToString(CultureInfo.InvariantCulture)],
            ["generations (target)", run.Info.Generations.ToString(CultureInfo.InvariantCulture)],
            ["base model", FinalModelCard.FolderName(config.Model.BasePath)],
            .. config.Model.ExpertPaths.Select(kv => (string[])["expert " + kv.Key, FinalModelCard.FolderName(kv.Value)]),
            ["weights exported", FinalModelCard.ShownPath(run.Path, weightsPath)]]);
        card.Heading("Experiment (experiment.yaml)");
        card.Code("yaml", FinalModelCard.WithoutMachinePaths(File.ReadAllText(run.ConfigPath)));
        if (selection.Final) FinalModelCard.AddAppendix(card, run);

        using var weights = SafetensorsModel.Open(weightsPath);
        using (var baseWeights = SafetensorsModel.Open(baseFolder.Directory))
            ModelCompatibility.EnsureCompatible(baseWeights, weights);
        var tensors = weights.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal)
            .Select(t => new TensorData(t.Name, t.DType, t.Shape, s => s.Write(weights.GetBytes(t.Name)))).ToArray();
        return HfFolderOutput.WriteOrClean(outDirectory, dir =>
            new ExportResult(dir, HfFolderOutput.Write(dir, baseFolder, tensors, maxShardBytes, card.ToString()), description));
    }

    private sealed record BcInfo(string Task, double Lower, double Upper, int Bins);

    private sealed record EliteInfo(string Task, IReadOnlyList<int> Cell, string Id, int Generation, int RunGenerations,
        IReadOnlyList<BcInfo> Bc, IReadOnlyList<KeyValuePair<string, double?>> Scores, bool Best)
    {
        public string Describe() => $"{(EliteIds.TryGetExpertTask(Id, out string task) ? "the expert " + task : "elite " + Id)}" +
                                    $" in the {Task} archive, cell ({string.Join(", ", Cell)}){(Best ? ", its best elite" : "")}";
    }

    private static (EliteInfo Elite, string WeightsPath) FindElite(RunDirectory run, ExperimentConfig config, ExportSelection selection)
    {
        if (selection.Task is null) throw new RunDirectoryException("choose the model: --task T [--cell i,j] for an elite, or --final");
        if (!File.Exists(run.ArchivePath))
            throw new RunDirectoryException($"{run.Path}: no archive.json yet (the run has not finished scoring its experts)");
        using var doc = ReadJson(run.ArchivePath);
        var root = doc.RootElement;
        var tasks = root.GetProperty("tasks").EnumerateArray().Select(t => t.GetString()!).ToArray();
        var archive = root.GetProperty("archives").EnumerateArray().FirstOrDefault(a => a.GetProperty("task").GetString() == selection.Task);
        if (archive.ValueKind == JsonValueKind.Undefined)
        {
            var names = root.GetProperty("archives").EnumerateArray().Select(a => a.GetProperty("task").GetString()!).ToArray();
            throw new RunDirectoryException(names.SequenceEqual(tasks)
                ? $"--task {selection.Task}: no such task in {run.Path} (its tasks: {string.Join(", ", tasks)})"
                : $"--task {selection.Task}: {run.Path} has no archive of that name; its archives: {string.Join(", ", names)}" +
                  (names.Contains(Core.Engine.CycleQDOptions.MeanQualityName) ? " (it ran without the cycle: one archive, quality = mean of the tasks)" : ""));
        }
        var bc = archive.GetProperty("bc").EnumerateArray().Select(b => new BcInfo(b.GetProperty("task").GetString()!,
            b.GetProperty("lower").GetDouble(), b.GetProperty("upper").GetDouble(), b.GetProperty("bins").GetInt32())).ToArray();
        var cells = archive.GetProperty("cells").EnumerateArray().ToArray();
        JsonElement chosen;
        if (selection.Cell is null)
        {
            if (cells.Length == 0) throw new RunDirectoryException($"--task {selection.Task}: the archive is empty");
            chosen = cells.MaxBy(c => c.GetProperty("quality").GetDouble());
        }
        else
        {
            if (selection.Cell.Count != bc.Length)
                throw new RunDirectoryException($"--cell {string.Join(",", selection.Cell)}: the {selection.Task} archive has {bc.Length} behaviour characteristics ({string.Join(", ", bc.Select(b => b.Task))}); give {bc.Length} indices");
            for (int d = 0; d < bc.Length; d++)
                if (selection.Cell[d] >= bc[d].Bins)
                    throw new RunDirectoryException($"--cell {string.Join(",", selection.Cell)}: index {selection.Cell[d]} is outside 0–{bc[d].Bins - 1} ({bc[d].Task} has {bc[d].Bins} bins)");
            chosen = cells.FirstOrDefault(c => c.GetProperty("cell").EnumerateArray().Select(x => x.GetInt32()).SequenceEqual(selection.Cell));
            if (chosen.ValueKind == JsonValueKind.Undefined)
            {
                var occupied = cells.Take(12).Select(c => string.Join(",", c.GetProperty("cell").EnumerateArray().Select(x => x.GetInt32())));
                throw new RunDirectoryException($"--cell {string.Join(",", selection.Cell)}: that cell of the {selection.Task} archive is empty " +
                                                $"(occupied: {string.Join(" ", occupied)}{(cells.Length > 12 ? $" … {cells.Length} in all" : "")})");
            }
        }
        var scores = chosen.GetProperty("scores").EnumerateObject()
            .Select(p => new KeyValuePair<string, double?>(p.Name, p.Value.ValueKind == JsonValueKind.Number ? p.Value.GetDouble() : null)).ToArray();
        var elite = new EliteInfo(selection.Task, chosen.GetProperty("cell").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
            chosen.GetProperty("elite").GetString()!, chosen.GetProperty("generation").GetInt32(), root.GetProperty("generations").GetInt32(),
            bc, scores, selection.Cell is null);

        if (EliteIds.TryGetExpertTask(elite.Id, out string task))
        {
            var expert = config.Model.ExpertPaths.FirstOrDefault(kv => kv.Key == task);
            if (expert.Value is null) throw new RunDirectoryException($"{run.ArchivePath}: elite {elite.Id} names no expert of the experiment");
            return (elite, expert.Value);
        }
        string path = run.Elites.PathOf(elite.Id);
        if (!File.Exists(path))
            throw new RunDirectoryException($"{path}: the elite's weights are missing (a running search may have just replaced it; export again)");
        return (elite, path);
    }

    private static JsonDocument ReadJson(string path)
    {
        try { return JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new RunDirectoryException($"{path}: invalid JSON ({e.Message})"); }
    }
}
