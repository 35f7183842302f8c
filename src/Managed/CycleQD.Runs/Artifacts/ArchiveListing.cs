using System.Globalization;
using System.Text;
using System.Text.Json;
using CycleQD.Core.Archives;

namespace CycleQD.Runs;

/// <summary>What an elite is besides its cell: the best of its archive, the run's most general elite, an expert.</summary>
[Flags]
public enum EliteMarks
{
    /// <summary>No mark.</summary>
    None = 0,

    /// <summary>The highest quality in its archive.</summary>
    Best = 1,

    /// <summary>The highest mean score over all tasks of the whole run (one elite, the first in archive order on ties; marked in every archive it occupies).</summary>
    General = 2,

    /// <summary>One of the experts the search started from.</summary>
    Expert = 4,
}

/// <summary>One occupied cell of an archive.</summary>
/// <param name="Archive">The archive's task (its quality).</param>
/// <param name="Cell">Bin indices, one per behaviour characteristic, 0-based as in archive.json.</param>
/// <param name="Quality">The elite's score on <paramref name="Archive"/>.</param>
/// <param name="Scores">Its score on every task of the run, in task order (NaN: not scored).</param>
/// <param name="BcTasks">The archive's behaviour-characteristic tasks, in cell-index order.</param>
/// <param name="Generation">The generation that made it (−1 for an expert).</param>
/// <param name="Parents">Its parents' ids from metrics.jsonl; empty for an expert; null when metrics.jsonl has no line for it.</param>
/// <param name="Id">The elite's id (a file under elites/, or "expert:TASK").</param>
/// <param name="Marks">Best, most general, expert.</param>
public sealed record ArchiveListingRow(string Archive, IReadOnlyList<int> Cell, double Quality, IReadOnlyList<double> Scores,
    IReadOnlyList<string> BcTasks, int Generation, IReadOnlyList<string>? Parents, string Id, EliteMarks Marks)
{
    /// <summary>The cell as "i,j".</summary>
    public string CellText => string.Join(",", Cell.Select(c => c.ToString(CultureInfo.InvariantCulture)));

    /// <summary>The mean of the scores that were scored (NaN when none).</summary>
    public double MeanScore => Scores.Any(double.IsFinite) ? Scores.Where(double.IsFinite).Average() : double.NaN;
}

/// <summary>
/// The archives of a run directory as rows, read from archive.json and, for parents, metrics.jsonl.
/// Both are only read, never locked: a run that is still going rewrites archive.json atomically and
/// appends whole lines to metrics.jsonl, so a reader sees the last committed generation (a line
/// being appended is skipped).
/// </summary>
public sealed class ArchiveListing
{
    /// <summary>The run's tasks, in order.</summary>
    public IReadOnlyList<string> Tasks { get; }

    /// <summary>Generations completed when archive.json was written.</summary>
    public int Generations { get; }

    /// <summary>Every occupied cell of every archive, in archive order then archive.json order.</summary>
    public IReadOnlyList<ArchiveListingRow> Rows { get; }

    private ArchiveListing(IReadOnlyList<string> tasks, int generations, IReadOnlyList<ArchiveListingRow> rows)
    {
        Tasks = tasks;
        Generations = generations;
        Rows = rows;
    }

    /// <summary>Reads the archives of <paramref name="run"/>.</summary>
    /// <exception cref="RunDirectoryException">no archive.json yet, or it is not a readable archive file (names the file).</exception>
    public static ArchiveListing Read(RunDirectory run)
    {
        if (!File.Exists(run.ArchivePath))
            throw new RunDirectoryException($"{run.Path}: no archive.json yet (the run has not finished scoring its experts)");
        var parents = ReadParents(run.MetricsPath);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(run.ArchivePath));
            var root = doc.RootElement;
            var tasks = root.GetProperty("tasks").EnumerateArray().Select(t => t.GetString()!).ToArray();
            var rows = new List<ArchiveListingRow>();
            foreach (var a in root.GetProperty("archives").EnumerateArray())
            {
                string task = a.GetProperty("task").GetString()!;
                var bc = a.GetProperty("bc").EnumerateArray().Select(b => b.GetProperty("task").GetString()!).ToArray();
                foreach (var c in a.GetProperty("cells").EnumerateArray())
                {
                    string id = c.GetProperty("elite").GetString()!;
                    var s = c.GetProperty("scores");
                    var scores = tasks.Select(t => s.TryGetProperty(t, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : double.NaN).ToArray();
                    bool expert = EliteIds.TryGetExpertTask(id, out _);
                    rows.Add(new ArchiveListingRow(task, c.GetProperty("cell").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                        c.GetProperty("quality").GetDouble(), scores, bc, c.GetProperty("generation").GetInt32(),
                        expert ? [] : parents.GetValueOrDefault(id), id, expert ? EliteMarks.Expert : EliteMarks.None));
                }
            }
            foreach (var g in rows.Select((r, i) => (Row: r, Index: i)).GroupBy(x => x.Row.Archive).ToList())
            {
                int best = g.MaxBy(x => x.Row.Quality).Index;
                rows[best] = rows[best] with { Marks = rows[best].Marks | EliteMarks.Best };
            }
            // One elite can hold cells in several archives: every row of the most general one is marked.
            string? general = rows.Where(r => double.IsFinite(r.MeanScore)).MaxBy(r => r.MeanScore)?.Id;
            for (int i = 0; i < rows.Count; i++)
                if (rows[i].Id == general) rows[i] = rows[i] with { Marks = rows[i].Marks | EliteMarks.General };
            return new ArchiveListing(tasks, root.GetProperty("generations").GetInt32(), rows);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new RunDirectoryException($"{run.ArchivePath}: not a readable archive file ({e.Message})");
        }
    }

    /// <summary>Child id → parent ids, from every complete line of metrics.jsonl (none when it is absent).</summary>
    private static Dictionary<string, IReadOnlyList<string>> ReadParents(string metricsPath)
    {
        var map = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        if (!File.Exists(metricsPath)) return map;
        string text;
        using (var fs = new FileStream(metricsPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
        using (var reader = new StreamReader(fs, Encoding.UTF8))
            text = reader.ReadToEnd();
        // A line without its newline is still being appended by the run: leave it for the next look.
        int end = text.LastIndexOf('\n');
        foreach (string line in (end < 0 ? "" : text[..end]).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            try
            {
                using var doc = JsonDocument.Parse(line);
                var r = doc.RootElement;
                if (r.TryGetProperty("child", out var child) && child.ValueKind == JsonValueKind.String && r.TryGetProperty("parents", out var p))
                    map[child.GetString()!] = p.EnumerateArray().Select(x => x.GetString()!).ToArray();
            }
            catch (JsonException e)
            {
                throw new RunDirectoryException($"{metricsPath}: a line is not valid JSON ({e.Message})");
            }
        }
        return map;
    }
}
