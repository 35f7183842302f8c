using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using CycleQD.Runs.Final;
using CycleQD.Runs.Merging;
using CycleQD.Tensors;

namespace CycleQD.Runs.Export;

/// <summary>
/// The parts of an exported final model's card that a person reads first: what the model is, its
/// test scores against the experts and baselines (report.json), and the merge weights (final.json);
/// and final.json itself as an appendix. No path of the machine that made it appears: folders are
/// named by their last component.
/// </summary>
internal static partial class FinalModelCard
{
    /// <summary>Adds the summary sections for the final model of <paramref name="run"/>.</summary>
    public static void AddSummary(ModelCardText card, RunDirectory run, ExperimentConfig config)
    {
        var final = FinalRecord.TryRead(run.FinalJsonPath);
        var experts = config.Model.ExpertPaths.Select(kv => $"{FolderName(kv.Value)} ({kv.Key})");
        string made = final?.Generations is { } g ? $" after {g} generations" : "";
        card.Paragraph($"A merge of {(config.Model.BasePath is { } b ? $"`{FolderName(b)}`" : "the base model")} and skill experts " +
                       $"{string.Join(", ", experts)}, made by CycleQD (quality-diversity model merging){made} in the run `{FolderName(run.Path)}`: " +
                       "the best elites of the search combined as base + Σ wᵢ (eliteᵢ − base), with the weights wᵢ chosen on the " +
                       $"{final?.Search?.Split ?? "search"} split.");
        AddTestTable(card, run);
        if (final is { Elites: { } elites, Weights: not null })
        {
            card.Heading("Merge weights");
            card.Table(["elite", "chosen as", "weight"], elites.Select(e => (IReadOnlyList<string>)[
                e.Id is { } id ? EliteName(id) : "?",
                e.Reason ?? "",
                e.Weight is { } w ? ModelCardText.Number(w) : "?"]));
            if (final.BaseWeight is { } bw)
                card.Paragraph($"The base model's own weight is 1 − Σ wᵢ = {ModelCardText.Number(bw)}.");
        }
    }

    /// <summary>The test table of report.json: every model's score per task and the average, in percent.</summary>
    private static void AddTestTable(ModelCardText card, RunDirectory run)
    {
        var report = ReadObject(run.ReportPath);
        if (report?["rows"] is not JsonArray rows || report["tasks"] is not JsonArray taskNodes)
        {
            card.Paragraph("No test scores: the run has no report.json (the final stage writes it).");
            return;
        }
        var tasks = taskNodes.Select(t => t!.GetValue<string>()).ToArray();
        card.Heading("Test scores (accuracy %, held-out test split)");
        if (report["complete"]?.GetValue<bool>() == false)
            card.Paragraph("The final stage had not finished when this was exported: some rows are missing.");
        static string Pct(JsonNode? x) => x is null ? "–" : (100 * x.GetValue<double>()).ToString("F1", CultureInfo.InvariantCulture);
        card.Table(["model", .. tasks, "average"], rows.Select(r => (IReadOnlyList<string>)[
            (r?["key"]?.GetValue<string>() == "final" ? "**this model** (" : "") + (r?["label"]?.GetValue<string>() ?? "?") + (r?["key"]?.GetValue<string>() == "final" ? ")" : ""),
            .. tasks.Select(t => Pct(r?["test"]?[t])),
            Pct(r?["test_average"])]));
    }

    /// <summary>"expert code" for an expert's id ("expert:tinyskills/code"), the first 12 hex digits of a child's content hash.</summary>
    internal static string EliteName(string id) =>
        Core.Archives.EliteIds.TryGetExpertTask(id, out string task) ? "expert " + Families.TaskLabels.Short(task) : id.Length > 12 ? id[..12] : id;

    /// <summary>Adds final/final.json, with absolute paths reduced to their last component, as the card's appendix.</summary>
    public static void AddAppendix(ModelCardText card, RunDirectory run)
    {
        if (FinalRecord.TryRead(run.FinalJsonPath) is not { } final) return;
        card.Heading("Appendix: how it was made (final/final.json)");
        card.Code("json", WithoutMachinePaths(final.ToJsonObject()).ToJsonString(ReadableJson.Indented));
    }

    /// <summary>A copy of <paramref name="node"/> in which every string that is an absolute path is replaced by its last component.</summary>
    internal static JsonNode WithoutMachinePaths(JsonNode node) => node switch
    {
        JsonObject o => new JsonObject(o.Select(kv => KeyValuePair.Create(kv.Key, kv.Value is null ? null : WithoutMachinePaths(kv.Value)))),
        JsonArray a => new JsonArray(a.Select(x => x is null ? null : WithoutMachinePaths(x)).ToArray()),
        JsonValue v when v.TryGetValue(out string? s) => JsonValue.Create(Path.IsPathFullyQualified(s) ? FolderName(s) : WithoutMachinePaths(s)),
        _ => node.DeepClone(),
    };

    /// <summary>
    /// <paramref name="text"/> (an experiment file) with every absolute path reduced to its last
    /// component, marked "…/": "base: /data/models/llama-8b" → "base: …/llama-8b".
    /// </summary>
    public static string WithoutMachinePaths(string text) =>
        AbsolutePath().Replace(text, m => "…/" + FolderName(m.Value));

    // An absolute path after a separator (start of a value, a flow list or map, a quote, key=value), up to the next separator.
    [System.Text.RegularExpressions.GeneratedRegex(@"(?<=(^|[\s:'""\[,{=;]))/[^\s'"",\]}#;]+", System.Text.RegularExpressions.RegexOptions.Multiline)]
    private static partial System.Text.RegularExpressions.Regex AbsolutePath();

    /// <summary>A file as a card shows it: relative to the run folder when inside it ("final/model.safetensors"), else "…/folder/file".</summary>
    public static string ShownPath(string runPath, string path)
    {
        string relative = Path.GetRelativePath(runPath, path);
        if (!relative.StartsWith("..", StringComparison.Ordinal) && !Path.IsPathRooted(relative)) return relative;
        string? parent = Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(path));
        return "…/" + (parent is null ? "" : FolderName(parent) + "/") + FolderName(path);
    }

    /// <summary>The last component of a path ("/data/models/llama-8b/" → "llama-8b").</summary>
    public static string FolderName(string path) => Path.GetFileName(Path.TrimEndingDirectorySeparator(path));

    private static JsonObject? ReadObject(string path)
    {
        try
        {
            return File.Exists(path) ? JsonNode.Parse(File.ReadAllText(path)) as JsonObject : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
