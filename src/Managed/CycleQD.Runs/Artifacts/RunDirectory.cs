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
/// <param name="ConfigDirectory">Folder that relative paths of the experiment are resolved against: the experiment file's own folder, or <c>run --base-dir</c>.</param>
/// <param name="Limit">Samples per task that override evaluation.limit (<c>run --limit</c>); null: the experiment's.</param>
/// <param name="NoFinal">The final stage is skipped (<c>run --no-final</c>).</param>
public sealed record RunInfo(ulong Seed, int Generations, string ConfigDirectory, int? Limit = null, bool NoFinal = false)
{
    /// <summary>The experiment with this run's command-line overrides (limit, final stage) applied.</summary>
    public ExperimentConfig Apply(ExperimentConfig config) => config.WithOverrides(Limit, NoFinal);
}

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
/// splits.json            the sample ids of every task's split (real-model runs), fixed at run time
/// environment.json       hashes of pinned task environments (AgentBench OS's root file system)
/// final/                 the final merge (model.safetensors, final.json); report.json the test table
/// plots/                 elite maps
/// state/run.lock         held (flock) by the one process that runs or resumes the directory
/// state/expert-svd/      mutation.basis expert: each expert's task-vector SVD (<see cref="ExpertSvdCache"/>)
/// distributed.json       runs with --workers: the run's key in Redis, the build and backend workers must match
/// workers/               --workers local: each local worker's log
/// </code>
/// A generation's commit appends its metrics line, then atomically replaces the checkpoint (which
/// records the metrics file's length), then archive.json. Opening truncates metrics.jsonl to the
/// checkpoint's length, so a crash anywhere loses at most the uncommitted generation and never
/// duplicates a line.
/// </summary>
public sealed class RunDirectory : ICheckpointSink, IDisposable
{
    private IReadOnlyList<string> _tasks = [];
    private Func<IReadOnlyList<Archive>>? _archives;
    private RunDirectoryLock? _lock;

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
    /// <summary>run.json.</summary>
    public string InfoPath => System.IO.Path.Combine(Path, "run.json");
    /// <summary>splits.json: the sample ids of each task's splits, fixed when the run started.</summary>
    public string SplitsPath => System.IO.Path.Combine(Path, "splits.json");
    /// <summary>environment.json: the content hashes of the environments the tasks' verdicts depend on (AgentBench OS's root file system).</summary>
    public string EnvironmentPath => System.IO.Path.Combine(Path, "environment.json");
    /// <summary>final/.</summary>
    public string FinalDirectory => System.IO.Path.Combine(Path, "final");
    /// <summary>The name of <see cref="DistributedPath"/> in a run folder.</summary>
    internal const string DistributedFileName = "distributed.json";

    /// <summary>distributed.json (runs with --workers).</summary>
    public string DistributedPath => System.IO.Path.Combine(Path, DistributedFileName);

    /// <summary>workers/: the logs of --workers local.</summary>
    public string WorkerLogsDirectory => System.IO.Path.Combine(Path, "workers");

    /// <summary>final/final.json.</summary>
    public string FinalJsonPath => System.IO.Path.Combine(FinalDirectory, "final.json");
    /// <summary>final/model.safetensors.</summary>
    public string FinalModelPath => System.IO.Path.Combine(FinalDirectory, SafetensorsWriter.SingleFileName);
    /// <summary>report.json.</summary>
    public string ReportPath => System.IO.Path.Combine(Path, "report.json");
    /// <summary>plots/.</summary>
    public string PlotsDirectory => System.IO.Path.Combine(Path, "plots");
    /// <summary>plots/progress.png: QD score, coverage and best quality over the generations.</summary>
    public string ProgressPlotPath => System.IO.Path.Combine(PlotsDirectory, "progress.png");
    /// <summary>plots/elite_map_gen{N}.png for generation count <paramref name="generations"/>.</summary>
    public string PlotPath(int generations) => System.IO.Path.Combine(PlotsDirectory, $"elite_map_gen{generations}.png");

    /// <summary>Whether this process holds the directory (made by <see cref="Create"/>, or opened exclusively).</summary>
    public bool IsHeld => _lock != null;

    /// <summary>Creates the folder (absent or empty) with the experiment copy and run.json.</summary>
    public static RunDirectory Create(string path, string experimentText, RunInfo info)
    {
        path = System.IO.Path.GetFullPath(path);
        if (File.Exists(path)) throw new RunDirectoryException($"--out {path}: is a file");
        if (Directory.Exists(path) && Directory.EnumerateFileSystemEntries(path).Any())
            throw new RunDirectoryException(!File.Exists(System.IO.Path.Combine(path, "run.json")) ? $"--out {path}: exists and is not empty"
                : File.Exists(System.IO.Path.Combine(path, "state", "checkpoint.json")) ? $"--out {path}: already holds a run; continue it with: cycleqd resume {path}"
                : $"--out {path}: holds a run that stopped before its first checkpoint; start it again with: cycleqd resume {path} (or remove the folder)");
        Directory.CreateDirectory(path);
        var dir = new RunDirectory(path, info) { _lock = RunDirectoryLock.Acquire(path) };
        try
        {
            WriteAtomically(dir.ConfigPath, Encoding.UTF8.GetBytes(experimentText));
            dir.WriteInfo();
        }
        catch
        {
            dir.Dispose();
            throw;
        }
        return dir;
    }

    /// <summary>
    /// Opens an existing run folder. <paramref name="exclusive"/> (run, resume) takes its lock, so a
    /// second process is refused with the holder named, and clears files a killed writer left half
    /// written; without it (export, show) the folder is only read.
    /// </summary>
    public static RunDirectory Open(string path, bool exclusive = false)
    {
        path = System.IO.Path.GetFullPath(path);
        if (!Directory.Exists(path)) throw new RunDirectoryException($"{path}: no such run directory");
        string infoPath = System.IO.Path.Combine(path, "run.json");
        if (!File.Exists(infoPath)) throw new RunDirectoryException($"{path}: not a run directory (no run.json)");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(infoPath));
            var r = doc.RootElement;
            // limit and final are absent in runs made without --limit / --no-final (and before they existed).
            var info = new RunInfo(ulong.Parse(r.GetProperty("seed").GetString()!, CultureInfo.InvariantCulture),
                r.GetProperty("generations").GetInt32(), r.GetProperty("config_directory").GetString()!,
                r.TryGetProperty("limit", out var limit) ? limit.GetInt32() : null,
                r.TryGetProperty("final", out var final) && !final.GetBoolean());
            var dir = new RunDirectory(path, info);
            if (exclusive)
            {
                dir._lock = RunDirectoryLock.Acquire(path);
                dir.RemoveInterruptedWrites();
            }
            return dir;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new RunDirectoryException($"{infoPath}: unreadable ({e.Message})");
        }
    }

    /// <summary>
    /// Deletes the temporary files of atomic writes (".NAME.tmp-PID-GUID") that a killed process left
    /// behind; only called while holding the lock, so no live writer owns them.
    /// </summary>
    private void RemoveInterruptedWrites()
    {
        foreach (string folder in new[] { Path, System.IO.Path.GetDirectoryName(CheckpointPath)!, Elites.Directory, FinalDirectory, PlotsDirectory })
        {
            if (!Directory.Exists(folder)) continue;
            foreach (string f in Directory.EnumerateFiles(folder, ".*.tmp-*"))
                File.Delete(f);
        }
    }

    /// <summary>
    /// Makes a directory that never reached its first checkpoint (killed while the experts were
    /// scored) ready for a fresh start: metrics and stored elites are removed; experiment.yaml,
    /// run.json and splits.json stay, so the restart is the run that was asked for.
    /// </summary>
    public void ResetUnstarted()
    {
        if (HasCheckpoint) throw new InvalidOperationException("the run has a checkpoint; resume it instead");
        if (File.Exists(MetricsPath)) File.Delete(MetricsPath);
        if (File.Exists(ArchivePath)) File.Delete(ArchivePath);
        if (Directory.Exists(Elites.Directory))
            foreach (string f in Directory.EnumerateFiles(Elites.Directory)) File.Delete(f);
    }

    /// <summary>Releases the lock (when held).</summary>
    public void Dispose()
    {
        _lock?.Dispose();
        _lock = null;
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
        using (var w = new Utf8JsonWriter(ms, ReadableJson.Writer(indented: true)))
        {
            w.WriteStartObject();
            w.WriteString("seed", Info.Seed.ToString(CultureInfo.InvariantCulture));
            w.WriteNumber("generations", Info.Generations);
            w.WriteString("config_directory", Info.ConfigDirectory);
            if (Info.Limit is { } limit) w.WriteNumber("limit", limit);
            if (Info.NoFinal) w.WriteBoolean("final", false);
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
        if (!HasCheckpoint) throw new RunDirectoryException($"{Path}: no checkpoint yet (state/checkpoint.json); the run stopped before its experts were scored");
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

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> (a file of this directory) under a temporary name, then renames it into place.</summary>
    public static void WriteAtomically(string path, byte[] bytes) => SafetensorsWriter.WriteAtomically(path, fs => fs.Write(bytes));
}
