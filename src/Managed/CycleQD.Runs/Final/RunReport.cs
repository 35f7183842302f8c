using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace CycleQD.Runs.Final;

/// <summary>
/// One model of the end-of-run table.
/// </summary>
/// <param name="Key">Stable id: "base", "expert:TASK", "task_arithmetic", "ties", "baseline:NAME", "elite:TASK", "best_elite_per_task",
/// "final_softmax", "final" (the searched merge).</param>
/// <param name="Label">What the table shows in its first column.</param>
/// <param name="Search">Score per task on the search split (valid), null when not evaluated there.</param>
/// <param name="Test">Score per task on the test split, null when not available.</param>
/// <param name="Note">How the model was made or why it is missing (e.g. "λ 0.7 chosen on valid").</param>
/// <param name="Details">Extra machine-readable facts (chosen λ, elite id and cell, …); may be null.</param>
public sealed record ReportRow(string Key, string Label, IReadOnlyList<double>? Search, IReadOnlyList<double>? Test, string Note, JsonObject? Details = null)
{
    /// <summary>
    /// Score per retention column (<see cref="RunReport.Retention"/>, same order) on the test split; null when the row is
    /// not one model (best elite per task) or the report has no retention columns.
    /// </summary>
    public IReadOnlyList<double>? Retention { get; init; }

    /// <summary>Whether the row does not depend on the search (base, experts, simple merges): cached per run directory.</summary>
    public bool SearchIndependent => Key is "base" or "task_arithmetic" or "ties" || Key.StartsWith(RunReport.BaselinePrefix, StringComparison.Ordinal)
                                     || Core.Archives.EliteIds.IsExpert(Key);
}

/// <summary>A retention column of the final table: a task the search does not optimise, scored on test for every row.</summary>
/// <param name="Task">Task name (report.retention).</param>
/// <param name="Unit">"accuracy" (a fraction in [0, 1], shown in percent) or "nats/token" (perplexity).</param>
/// <param name="LowerIsBetter">Whether lower scores are better (perplexity).</param>
public sealed record RetentionColumn(string Task, string Unit, bool LowerIsBetter);

/// <summary>
/// report.json and the table of the end of a run: per model, the score on every task of the test
/// split and their mean (plus the search split's mean). <see cref="Complete"/> is false while the
/// final stage is still filling it in; rows that do not depend on the search are reused from a
/// previous report of the same run directory when its evaluation settings match.
/// </summary>
public sealed class RunReport
{
    /// <summary>Key prefix of the rows of report.baselines.</summary>
    public const string BaselinePrefix = "baseline:";

    /// <summary>The row key of baseline <paramref name="name"/>.</summary>
    public static string BaselineKey(string name) => BaselinePrefix + name;

    /// <summary>
    /// One sentence per (CycleQD final row, baseline row) pair with test scores where the final model's test average
    /// is not above the baseline's: "CycleQD final (search) (41.2 % test average) does not beat multitask (baseline) (47.9 %)."
    /// </summary>
    public IReadOnlyList<string> Verdicts()
    {
        var ci = CultureInfo.InvariantCulture;
        var finals = Rows.Where(r => r.Key is "final" or "final_softmax" && r.Test is not null).ToArray();
        var lines = new List<string>();
        foreach (var b in Rows.Where(r => r.Key.StartsWith(BaselinePrefix, StringComparison.Ordinal) && r.Test is not null))
            foreach (var f in finals)
            {
                double fa = f.Test!.Average(), ba = b.Test!.Average();
                if (fa <= ba)
                    lines.Add(string.Create(ci, $"{f.Label} ({100 * fa:F1} % test average) does not beat {b.Label} ({100 * ba:F1} %)."));
            }
        return lines;
    }

    /// <summary>Format version of report.json.</summary>
    public const int FormatVersion = 1;

    /// <summary>Task names, in score order.</summary>
    public IReadOnlyList<string> Tasks { get; }

    /// <summary>Identifies the evaluation (splits, limit, data folder): cached rows are reused only under the same one.</summary>
    public string EvaluationKey { get; }

    /// <summary>Generations the CycleQD rows belong to.</summary>
    public int Generations { get; set; }

    /// <summary>The search split's name in the table's header ("valid", "train", or "search" when tasks differ).</summary>
    public string SearchSplit { get; set; } = "valid";

    /// <summary>Whether every row has been evaluated.</summary>
    public bool Complete { get; set; }

    /// <summary>The rows, in table order.</summary>
    public List<ReportRow> Rows { get; } = [];

    /// <summary>The retention columns (report.retention), shown after the average and never averaged with the searched tasks.</summary>
    public IReadOnlyList<RetentionColumn> Retention { get; init; } = [];

    /// <param name="tasks">Task names.</param>
    /// <param name="evaluationKey">See <see cref="EvaluationKey"/>.</param>
    /// <param name="generations">See <see cref="Generations"/>.</param>
    public RunReport(IReadOnlyList<string> tasks, string evaluationKey, int generations)
    {
        Tasks = tasks;
        EvaluationKey = evaluationKey;
        Generations = generations;
    }

    /// <summary>The row with <paramref name="key"/>, or null.</summary>
    public ReportRow? Find(string key) => Rows.FirstOrDefault(r => r.Key == key);

    /// <summary>Adds <paramref name="row"/> or replaces the row with its key.</summary>
    public void Set(ReportRow row)
    {
        int i = Rows.FindIndex(r => r.Key == row.Key);
        if (i >= 0) Rows[i] = row;
        else Rows.Add(row);
    }

    /// <summary>report.json's bytes.</summary>
    public byte[] ToJson()
    {
        var root = new JsonObject
        {
            ["format"] = FormatVersion,
            ["complete"] = Complete,
            ["generations"] = Generations,
            ["evaluation"] = EvaluationKey,
            ["tasks"] = new JsonArray(Tasks.Select(t => (JsonNode)t).ToArray()),
        };
        if (Retention.Count > 0)
            root["retention"] = new JsonArray(Retention.Select(c => (JsonNode)new JsonObject
            {
                ["task"] = c.Task, ["unit"] = c.Unit, ["lower_is_better"] = c.LowerIsBetter,
            }).ToArray());
        var rows = new JsonArray();
        foreach (var r in Rows)
        {
            var o = new JsonObject { ["key"] = r.Key, ["label"] = r.Label, ["note"] = r.Note };
            o["search"] = Scores(r.Search);
            o["test"] = Scores(r.Test);
            o["test_average"] = r.Test is null ? null : r.Test.Average();
            o["search_average"] = r.Search is null ? null : r.Search.Average();
            if (Retention.Count > 0) o["retention"] = RetentionScores(r.Retention);
            if (r.Details != null) o["details"] = r.Details.DeepClone();
            rows.Add(o);
        }
        root["rows"] = rows;
        return Encoding.UTF8.GetBytes(root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n");
    }

    private JsonObject? RetentionScores(IReadOnlyList<double>? s)
    {
        if (s is null) return null;
        var o = new JsonObject();
        for (int c = 0; c < Retention.Count; c++) o[Retention[c].Task] = s[c];
        return o;
    }

    private JsonObject? Scores(IReadOnlyList<double>? s)
    {
        if (s is null) return null;
        var o = new JsonObject();
        for (int t = 0; t < Tasks.Count; t++) o[Tasks[t]] = s[t];
        return o;
    }

    /// <summary>Reads report.json; null when it is absent, unreadable, or of other tasks or evaluation settings (then nothing is reused).</summary>
    public static RunReport? TryRead(string path, IReadOnlyList<string> tasks, string evaluationKey)
    {
        if (!File.Exists(path)) return null;
        try
        {
            var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            if (root["format"]?.GetValue<int>() != FormatVersion) return null;
            if (root["evaluation"]?.GetValue<string>() != evaluationKey) return null;
            var t = root["tasks"]!.AsArray().Select(n => n!.GetValue<string>()).ToArray();
            if (!t.SequenceEqual(tasks)) return null;
            var retention = root["retention"] is JsonArray ra
                ? ra.Select(c => new RetentionColumn(c!["task"]!.GetValue<string>(), c["unit"]!.GetValue<string>(), c["lower_is_better"]!.GetValue<bool>())).ToArray()
                : [];
            var report = new RunReport(tasks, evaluationKey, root["generations"]!.GetValue<int>()) { Complete = root["complete"]!.GetValue<bool>(), Retention = retention };
            var retentionTasks = retention.Select(c => c.Task).ToArray();
            foreach (var n in root["rows"]!.AsArray())
            {
                var o = n!.AsObject();
                report.Rows.Add(new ReportRow(o["key"]!.GetValue<string>(), o["label"]!.GetValue<string>(),
                    ReadScores(o["search"], tasks), ReadScores(o["test"], tasks), o["note"]?.GetValue<string>() ?? "",
                    o["details"] is JsonObject d ? (JsonObject)d.DeepClone() : null) { Retention = ReadScores(o["retention"], retentionTasks) });
            }
            return report;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException or FormatException or KeyNotFoundException)
        {
            return null;
        }
    }

    private static double[]? ReadScores(JsonNode? n, IReadOnlyList<string> tasks) =>
        n is JsonObject o ? tasks.Select(t => o[t]!.GetValue<double>()).ToArray() : null;

    /// <summary>
    /// The table as Markdown: one row per model, test score per task in percent, their mean, and the
    /// search split's mean; rows without test scores show their note.
    /// </summary>
    public string ToMarkdown()
    {
        var ci = CultureInfo.InvariantCulture;
        var names = Tasks.Select(t => t.Contains('/') ? t[(t.LastIndexOf('/') + 1)..] : t).ToArray();
        var sb = new StringBuilder();
        string retentionHeader = string.Concat(Retention.Select(c => RetentionHeader(c) + " | "));
        sb.AppendLine("| model | " + string.Join(" | ", names) + " | average | " + retentionHeader + SearchSplit + " average | how |");
        sb.AppendLine("|---|" + string.Concat(names.Select(_ => "---:|")) + "---:|" + string.Concat(Retention.Select(_ => "---:|")) + "---:|---|");
        foreach (var r in Rows)
        {
            string cells = r.Test is null
                ? string.Join(" | ", names.Select(_ => "–")) + " | –"
                : string.Join(" | ", r.Test.Select(s => (100 * s).ToString("F1", ci))) + " | " + (100 * r.Test.Average()).ToString("F1", ci);
            string retention = string.Concat(RetentionCells(r).Select(c => c + " | "));
            string search = r.Search is null ? "–" : (100 * r.Search.Average()).ToString("F1", ci);
            sb.AppendLine(ci, $"| {r.Label} | {cells} | {retention}{search} | {r.Note} |");
        }
        if (Retention.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine(RetentionNote());
        }
        var verdicts = Verdicts();
        if (verdicts.Count > 0)
        {
            sb.AppendLine();
            foreach (var v in verdicts) sb.AppendLine("**" + v + "**");
        }
        return sb.ToString();
    }

    /// <summary>The table as plain aligned text for a terminal.</summary>
    public string ToText()
    {
        var ci = CultureInfo.InvariantCulture;
        var names = Tasks.Select(t => t.Contains('/') ? t[(t.LastIndexOf('/') + 1)..] : t).ToArray();
        var header = new List<string> { "model" };
        header.AddRange(names);
        header.Add("average");
        header.AddRange(Retention.Select(RetentionHeader));
        header.Add(SearchSplit + " avg");
        var lines = new List<string[]> { header.ToArray() };
        foreach (var r in Rows)
        {
            var l = new List<string> { r.Label };
            if (r.Test is null) l.AddRange(Enumerable.Repeat("–", names.Length + 1));
            else
            {
                l.AddRange(r.Test.Select(s => (100 * s).ToString("F1", ci)));
                l.Add((100 * r.Test.Average()).ToString("F1", ci));
            }
            l.AddRange(RetentionCells(r));
            l.Add(r.Search is null ? "–" : (100 * r.Search.Average()).ToString("F1", ci));
            lines.Add(l.ToArray());
        }
        int cols = header.Count;
        var width = Enumerable.Range(0, cols).Select(c => lines.Max(l => l[c].Length)).ToArray();
        var sb = new StringBuilder();
        foreach (var l in lines)
        {
            sb.Append(l[0].PadRight(width[0]));
            for (int c = 1; c < cols; c++) sb.Append("  ").Append(l[c].PadLeft(width[c]));
            sb.AppendLine();
        }
        if (Retention.Count > 0) sb.AppendLine(RetentionNote());
        foreach (var v in Verdicts()) sb.AppendLine(v);
        return sb.ToString();
    }

    private static string ShortName(string task) => task.Contains('/') ? task[(task.LastIndexOf('/') + 1)..] : task;

    /// <summary>"generic (kept)" for an accuracy, "perplexity ↓ nats/tok" for a lower-is-better column.</summary>
    private static string RetentionHeader(RetentionColumn c) =>
        c.LowerIsBetter ? $"{ShortName(c.Task)} ↓ {c.Unit}" : $"{ShortName(c.Task)} (kept)";

    /// <summary>A row's retention cells: accuracies in percent, other units as they are (3 decimals); "–" where the row has none.</summary>
    private IEnumerable<string> RetentionCells(ReportRow r) => Retention.Select((c, i) =>
        r.Retention is null ? "–"
        : c.Unit == "accuracy" ? (100 * r.Retention[i]).ToString("F1", CultureInfo.InvariantCulture)
        : r.Retention[i].ToString("F3", CultureInfo.InvariantCulture));

    /// <summary>What the retention columns are, under the table.</summary>
    private string RetentionNote()
    {
        var parts = Retention.Select(c => c.LowerIsBetter
            ? $"{ShortName(c.Task)}: {c.Unit} on the text (lower is better)"
            : $"{ShortName(c.Task)}: test accuracy, %");
        return $"average: mean over the searched tasks ({string.Join(", ", Tasks.Select(ShortName))}) only. " +
               $"Retention columns, scored on test and never averaged: {string.Join("; ", parts)}.";
    }
}
