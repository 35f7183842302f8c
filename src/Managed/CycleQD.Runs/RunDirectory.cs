using System.Globalization;
using System.Text;
using System.Text.Json;
using CycleQD.Core.Archives;
using CycleQD.Core.Engine;
using CycleQD.Tensors;

namespace CycleQD.Runs;

/// <summary>Run-wide settings fixed at <c>run</c> time (the effective seed, the generation target, where relative model paths point).</summary>
/// <param name="Seed">Effective run seed (the experiment's, or --seed).</param>
/// <param name="Generations">Target number of generations (resume may raise it).</param>
/// <param name="ConfigDirectory">Folder of the original experiment file, for its relative paths.</param>
public sealed record RunInfo(ulong Seed, int Generations, string ConfigDirectory);

/// <summary>
/// A run's folder:
/// <code>
/// experiment.yaml        copy of the experiment file
/// run.json               effective seed, generation target, original config folder
/// state/checkpoint.json  everything needed to continue (written atomically after every generation)
/// elites/ID.safetensors  each archived child once, by content hash; unreferenced ones are deleted
/// archive.json           per task: cell → quality, all scores, elite id
/// metrics.jsonl          one line per generation; wall-clock figures only inside "timing"
/// summary.md             written when the target is reached
/// </code>
/// A generation's commit appends its metrics line, then atomically replaces the checkpoint (which
/// records the metrics file's length), then archive.json. Opening truncates metrics.jsonl to the
/// checkpoint's length, so a crash anywhere loses at most the uncommitted generation and never
/// duplicates a line.
/// </summary>
public sealed class RunDirectory : ICheckpointSink
{
    private IReadOnlyList<string> _tasks = [];
    private Func<IReadOnlyList<Archive>>? _archives;

    /// <summary>The folder.</summary>
    public string Path { get; }

    /// <summary>Run-wide settings.</summary>
    public RunInfo Info { get; private set; }

    /// <summary>Elite weights.</summary>
    public SafetensorsEliteStore Elites { get; }

    private RunDirectory(string path, RunInfo info)
    {
        Path = path;
        Info = info;
        Elites = new SafetensorsEliteStore(System.IO.Path.Combine(path, "elites"));
    }

    /// <summary>experiment.yaml.</summary>
    public string ConfigPath => System.IO.Path.Combine(Path, "experiment.yaml");
    /// <summary>state/checkpoint.json.</summary>
    public string CheckpointPath => System.IO.Path.Combine(Path, "state", "checkpoint.json");
    /// <summary>archive.json.</summary>
    public string ArchivePath => System.IO.Path.Combine(Path, "archive.json");
    /// <summary>metrics.jsonl.</summary>
    public string MetricsPath => System.IO.Path.Combine(Path, "metrics.jsonl");
    /// <summary>summary.md.</summary>
    public string SummaryPath => System.IO.Path.Combine(Path, "summary.md");
    private string InfoPath => System.IO.Path.Combine(Path, "run.json");

    /// <summary>Creates the folder (absent or empty) with the experiment copy and run.json.</summary>
    public static RunDirectory Create(string path, string experimentText, RunInfo info)
    {
        path = System.IO.Path.GetFullPath(path);
        if (File.Exists(path)) throw new RunDirectoryException($"--out {path}: is a file");
        if (Directory.Exists(path) && Directory.EnumerateFileSystemEntries(path).Any())
            throw new RunDirectoryException(File.Exists(System.IO.Path.Combine(path, "run.json"))
                ? $"--out {path}: already holds a run; continue it with: cycleqd resume {path}"
                : $"--out {path}: exists and is not empty");
        Directory.CreateDirectory(path);
        var dir = new RunDirectory(path, info);
        WriteAtomically(dir.ConfigPath, Encoding.UTF8.GetBytes(experimentText));
        dir.WriteInfo();
        return dir;
    }

    /// <summary>Opens an existing run folder.</summary>
    public static RunDirectory Open(string path)
    {
        path = System.IO.Path.GetFullPath(path);
        if (!Directory.Exists(path)) throw new RunDirectoryException($"{path}: no such run directory");
        string infoPath = System.IO.Path.Combine(path, "run.json");
        if (!File.Exists(infoPath)) throw new RunDirectoryException($"{path}: not a run directory (no run.json)");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(infoPath));
            var r = doc.RootElement;
            var info = new RunInfo(ulong.Parse(r.GetProperty("seed").GetString()!, CultureInfo.InvariantCulture),
                r.GetProperty("generations").GetInt32(), r.GetProperty("config_directory").GetString()!);
            return new RunDirectory(path, info);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new RunDirectoryException($"{infoPath}: unreadable ({e.Message})");
        }
    }

    /// <summary>Raises the generation target (resume --generations).</summary>
    public void SetTarget(int generations)
    {
        Info = Info with { Generations = generations };
        WriteInfo();
    }

    private void WriteInfo()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("seed", Info.Seed.ToString(CultureInfo.InvariantCulture));
            w.WriteNumber("generations", Info.Generations);
            w.WriteString("config_directory", Info.ConfigDirectory);
            w.WriteEndObject();
        }
        WriteAtomically(InfoPath, ms.ToArray());
    }

    /// <summary>Tells the directory the task names and where to read the archives when it writes metrics and archive.json.</summary>
    public void Bind(IReadOnlyList<string> tasks, Func<IReadOnlyList<Archive>> archives)
    {
        _tasks = tasks;
        _archives = archives;
    }

    /// <summary>Whether a checkpoint exists (the run got past initialisation).</summary>
    public bool HasCheckpoint => File.Exists(CheckpointPath);

    /// <summary>Reads the checkpoint and cuts metrics.jsonl back to the lines it covers.</summary>
    public RunState ReadCheckpoint()
    {
        if (!HasCheckpoint) throw new RunDirectoryException($"{Path}: no checkpoint yet (state/checkpoint.json); the run stopped before its experts were scored: start it again with cycleqd run");
        var (state, metricsLength) = RunStateJson.ReadCheckpoint(File.ReadAllBytes(CheckpointPath), CheckpointPath);
        long have = File.Exists(MetricsPath) ? new FileInfo(MetricsPath).Length : 0;
        if (have < metricsLength) throw new RunDirectoryException($"{MetricsPath}: {have} bytes, the checkpoint covers {metricsLength}");
        if (have > metricsLength)
            using (var fs = new FileStream(MetricsPath, FileMode.Open, FileAccess.Write)) { fs.SetLength(metricsLength); fs.Flush(true); }
        return state;
    }

    /// <inheritdoc/>
    public void Commit(RunState state, GenerationRecord? record)
    {
        var archives = _archives?.Invoke() ?? throw new InvalidOperationException("Bind the run directory before committing");
        long metricsLength;
        using (var fs = new FileStream(MetricsPath, FileMode.Append, FileAccess.Write))
        {
            if (record != null) fs.Write(RunStateJson.MetricsLine(record, _tasks, archives));
            fs.Flush(true);
            metricsLength = fs.Length;
        }
        WriteAtomically(CheckpointPath, RunStateJson.Checkpoint(state, metricsLength));
        WriteAtomically(ArchivePath, RunStateJson.ArchiveFile(state, _tasks, archives));
    }

    /// <summary>Writes summary.md.</summary>
    public void WriteSummary(string text) => WriteAtomically(SummaryPath, Encoding.UTF8.GetBytes(text));

    private static void WriteAtomically(string path, byte[] bytes) => SafetensorsWriter.WriteAtomically(path, fs => fs.Write(bytes));
}
