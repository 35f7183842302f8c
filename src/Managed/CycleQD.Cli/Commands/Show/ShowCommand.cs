using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using CycleQD.Core.Engine;
using CycleQD.Runs;

namespace CycleQD.Cli.Commands.Show;

/// <summary>`cycleqd show RUN [--task T] [--sort quality|generation|TASK] [--csv|--json]`: a run's archives as a table.</summary>
internal static class ShowCommand
{
    public static Command Create()
    {
        var cmd = new Command("show", "List the elites of a run's archives (cell, quality, scores, generation, parents, id), marking each archive's best, the most general elite and the experts.");
        foreach (var s in ShowOptions.All)
            if (s is Argument a) cmd.Arguments.Add(a); else cmd.Options.Add((Option)s);
        cmd.SetAction(parse => Run(parse.GetRequiredValue(ShowOptions.RunDir), parse.GetValue(ShowOptions.Task), parse.GetValue(ShowOptions.Sort) ?? "quality",
            parse.GetValue(ShowOptions.Csv), parse.GetValue(ShowOptions.Json), parse.InvocationConfiguration.Output));
        return cmd;
    }

    internal static int Run(string runDir, string? task, string sort, bool csv, bool json, TextWriter o)
    {
        if (csv && json) throw new CliUsageException("--csv and --json: choose one output format");
        // Not exclusive: a running search holds the lock, and show only reads what it has committed.
        using var run = RunDirectory.Open(runDir);
        var listing = ArchiveListing.Read(run);
        var tasks = listing.Tasks;
        // A run without the cycle has one archive, "mean", instead of one per task.
        bool noCycle = !tasks.Contains(CycleQDOptions.MeanQualityName) && listing.Rows.Any(r => r.Archive == CycleQDOptions.MeanQualityName);
        if (task != null && (noCycle ? task != CycleQDOptions.MeanQualityName : !tasks.Contains(task)))
            throw new CliUsageException(noCycle
                ? $"--task {task}: {run.Path} ran without the cycle: its one archive is {CycleQDOptions.MeanQualityName} (quality = mean of {string.Join(", ", tasks)})"
                : $"--task {task}: no such task in {run.Path} (its tasks: {string.Join(", ", tasks)})");
        int sortTask = tasks.ToList().IndexOf(sort);
        if (sort is not ("quality" or "generation") && sortTask < 0)
            throw new CliUsageException($"--sort {sort}: sort by quality, generation or one of the run's tasks ({string.Join(", ", tasks)})");

        var rows = listing.Rows.Where(r => task is null || r.Archive == task);
        // Within each archive (archives stay in task order), so the table reads archive by archive.
        Func<ArchiveListingRow, double> key = sort switch
        {
            "quality" => r => r.Quality,
            "generation" => r => r.Generation,
            _ => r => double.IsNaN(r.Scores[sortTask]) ? double.NegativeInfinity : r.Scores[sortTask],
        };
        var ordered = rows.GroupBy(r => r.Archive).SelectMany(g => g.OrderByDescending(key).ThenBy(r => r.Id, StringComparer.Ordinal)).ToList();

        if (json) WriteJson(o, tasks, ordered);
        else if (csv) WriteCsv(o, tasks, ordered);
        else WriteTable(o, run.Path, listing, ordered);
        return 0;
    }

    private static string Number(double v) => double.IsNaN(v) ? "" : v.ToString("F4", CultureInfo.InvariantCulture);

    private static string Parents(ArchiveListingRow r) => r.Parents is null ? "?" : string.Join(" ", r.Parents);

    private static string Marks(EliteMarks m) => string.Join(" ", new[]
    {
        m.HasFlag(EliteMarks.Best) ? "best" : null, m.HasFlag(EliteMarks.General) ? "general" : null, m.HasFlag(EliteMarks.Expert) ? "expert" : null,
    }.Where(x => x != null));

    private static void WriteTable(TextWriter o, string path, ArchiveListing listing, List<ArchiveListingRow> rows)
    {
        var tasks = listing.Tasks;
        o.WriteLine($"run: {path} ({listing.Generations} generations)");
        foreach (var g in rows.GroupBy(r => r.Archive))
        {
            var bc = g.First().BcTasks;
            o.WriteLine();
            o.WriteLine($"archive {g.Key}: {g.Count()} elites; cell = bins of {string.Join(", ", bc)}");
            var table = new TextTable(["", "cell", $"quality ({g.Key})", .. bc, "mean", "gen", "parents", "id"]).AlignRight([2, .. Enumerable.Range(3, bc.Count + 2)]);
            foreach (var r in g)
                table.Add([Marks(r.Marks), r.CellText, Number(r.Quality), .. bc.Select(t => Number(r.Scores[tasks.ToList().IndexOf(t)])),
                    Number(r.MeanScore), r.Generation < 0 ? "-" : r.Generation.ToString(CultureInfo.InvariantCulture), Parents(r), r.Id]);
            table.Write(o);
        }
        o.WriteLine();
        o.WriteLine("best: the archive's highest quality; general: the highest mean over all tasks in the run; expert: a starting expert; parents ?: not in metrics.jsonl yet");
    }

    private static void WriteCsv(TextWriter o, IReadOnlyList<string> tasks, List<ArchiveListingRow> rows)
    {
        o.WriteLine(string.Join(",", new[] { "archive", "cell", "quality" }.Concat(tasks).Concat(["mean", "generation", "parents", "id", "marks"]).Select(Field)));
        foreach (var r in rows)
            o.WriteLine(string.Join(",", new[] { r.Archive, r.CellText, Number(r.Quality) }.Concat(r.Scores.Select(Number))
                .Concat([Number(r.MeanScore), r.Generation.ToString(CultureInfo.InvariantCulture), Parents(r), r.Id, Marks(r.Marks)]).Select(Field)));
    }

    /// <summary>RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled.</summary>
    private static string Field(string s) => s.IndexOfAny([',', '"', '\n', '\r']) < 0 ? s : "\"" + s.Replace("\"", "\"\"") + "\"";

    private static void WriteJson(TextWriter o, IReadOnlyList<string> tasks, List<ArchiveListingRow> rows)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartArray();
            foreach (var r in rows)
            {
                w.WriteStartObject();
                w.WriteString("archive", r.Archive);
                w.WriteStartArray("cell");
                foreach (int c in r.Cell) w.WriteNumberValue(c);
                w.WriteEndArray();
                w.WriteNumber("quality", r.Quality);
                w.WriteStartObject("scores");
                for (int t = 0; t < tasks.Count; t++)
                    if (double.IsNaN(r.Scores[t])) w.WriteNull(tasks[t]); else w.WriteNumber(tasks[t], r.Scores[t]);
                w.WriteEndObject();
                w.WriteStartArray("bc");
                foreach (var t in r.BcTasks) w.WriteStringValue(t);
                w.WriteEndArray();
                w.WriteNumber("generation", r.Generation);
                if (r.Parents is null) w.WriteNull("parents");
                else
                {
                    w.WriteStartArray("parents");
                    foreach (var p in r.Parents) w.WriteStringValue(p);
                    w.WriteEndArray();
                }
                w.WriteString("id", r.Id);
                w.WriteBoolean("best", r.Marks.HasFlag(EliteMarks.Best));
                w.WriteBoolean("general", r.Marks.HasFlag(EliteMarks.General));
                w.WriteBoolean("expert", r.Marks.HasFlag(EliteMarks.Expert));
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        o.WriteLine(System.Text.Encoding.UTF8.GetString(ms.ToArray()));
    }
}
