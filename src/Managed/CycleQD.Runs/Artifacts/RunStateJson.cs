using System.Globalization;
using System.Text.Json;
using CycleQD.Core.Archives;
using CycleQD.Core.Engine;
using CycleQD.Tensors;

namespace CycleQD.Runs;

/// <summary>
/// JSON for checkpoints, metrics lines and archive.json, written field by field (no reflection, so
/// trimmed builds work and the bytes are stable: doubles in shortest round-trip form, keys in a fixed order).
/// </summary>
internal static class RunStateJson
{
    private static readonly JsonWriterOptions Indented = ReadableJson.Writer(indented: true);

    public static byte[] Checkpoint(RunState s, long metricsLength)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, Indented))
        {
            w.WriteStartObject();
            w.WriteNumber("format", 1);
            w.WriteString("seed", s.Seed.ToString(CultureInfo.InvariantCulture));
            w.WriteNumber("next_generation", s.NextGeneration);
            w.WriteNumber("metrics_length", metricsLength);
            w.WriteStartArray("bins");
            foreach (var b in s.Bins)
            {
                w.WriteStartObject();
                w.WriteNumber("lower", b.Lower);
                w.WriteNumber("upper", b.Upper);
                w.WriteNumber("count", b.Count);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("experts");
            foreach (var e in s.Experts)
            {
                w.WriteStartObject();
                w.WriteString("name", e.Name);
                Doubles(w, "scores", e.Scores);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("archives");
            foreach (var a in s.Archives)
            {
                w.WriteStartObject();
                w.WriteNumber("task", a.Task);
                w.WriteStartArray("cells");
                foreach (var c in a.Cells)
                {
                    w.WriteStartObject();
                    w.WriteNumber("cell", c.Cell);
                    w.WriteString("id", c.Elite.Id);
                    w.WriteNumber("generation", c.Elite.Generation);
                    Doubles(w, "scores", c.Elite.Scores);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("in_flight");
            foreach (var p in s.InFlight)
            {
                w.WriteStartObject();
                w.WriteNumber("generation", p.Generation);
                w.WriteNumber("quality_task", p.QualityTask);
                w.WriteStartArray("parents");
                foreach (var id in p.Parents) w.WriteStringValue(id);
                w.WriteEndArray();
                w.WriteStartArray("weights");
                foreach (float x in p.Weights) w.WriteNumberValue(x);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return ms.ToArray();
    }

    public static (RunState State, long MetricsLength) ReadCheckpoint(byte[] json, string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var r = doc.RootElement;
            if (r.GetProperty("format").GetInt32() != 1) throw new RunDirectoryException($"{path}: unknown checkpoint format");
            var bins = r.GetProperty("bins").EnumerateArray().Select(b => new BinSpec(b.GetProperty("lower").GetDouble(), b.GetProperty("upper").GetDouble(), b.GetProperty("count").GetInt32())).ToArray();
            var experts = r.GetProperty("experts").EnumerateArray().Select(e => new ExpertState(e.GetProperty("name").GetString()!, ReadDoubles(e.GetProperty("scores")))).ToArray();
            var archives = r.GetProperty("archives").EnumerateArray().Select(a => new ArchiveState(a.GetProperty("task").GetInt32(),
                a.GetProperty("cells").EnumerateArray().Select(c => new CellState(c.GetProperty("cell").GetInt32(),
                    new Elite(c.GetProperty("id").GetString()!, ReadDoubles(c.GetProperty("scores")), c.GetProperty("generation").GetInt32()))).ToArray())).ToArray();
            var plans = r.GetProperty("in_flight").EnumerateArray().Select(p => new BreedingPlan(p.GetProperty("generation").GetInt32(), p.GetProperty("quality_task").GetInt32(),
                p.GetProperty("parents").EnumerateArray().Select(x => x.GetString()!).ToArray(),
                p.GetProperty("weights").EnumerateArray().Select(x => x.GetSingle()).ToArray())).ToArray();
            var state = new RunState(ulong.Parse(r.GetProperty("seed").GetString()!, CultureInfo.InvariantCulture), r.GetProperty("next_generation").GetInt32(),
                bins, experts, archives, plans);
            return (state, r.GetProperty("metrics_length").GetInt64());
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new RunDirectoryException($"{path}: not a readable checkpoint ({e.Message})");
        }
    }

    public static byte[] MetricsLine(GenerationRecord g, IReadOnlyList<string> tasks, IReadOnlyList<Archive> archives)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, ReadableJson.Writer(indented: false)))
        {
            w.WriteStartObject();
            w.WriteNumber("generation", g.Generation);
            w.WriteString("quality_task", CycleQDOptions.QualityName(g.QualityTask, tasks));
            w.WriteStartArray("parents");
            foreach (var p in g.Parents) w.WriteStringValue(p);
            w.WriteEndArray();
            w.WriteStartArray("weights");
            foreach (float x in g.Weights) w.WriteNumberValue(x);
            w.WriteEndArray();
            PerTask(w, "scores", tasks, t => g.Scores[t]);
            if (g.ChildId is null) w.WriteNull("child"); else w.WriteString("child", g.ChildId);
            if (g.NonFinite is null) w.WriteNull("non_finite"); else w.WriteString("non_finite", g.NonFinite);
            w.WriteNumber("cells_improved", g.Insertions.Count);
            w.WriteStartArray("inserted");
            foreach (var ins in g.Insertions)
            {
                w.WriteStartObject();
                w.WriteString("archive", CycleQDOptions.QualityName(ins.Task, tasks));
                Ints(w, "cell", archives.First(a => a.Task == ins.Task).Unflatten(ins.Cell));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            // Keyed by archive: the task names, or "mean" for the one archive of a run without the cycle.
            PerArchive(w, "qd_score", g.Archives, tasks, a => a.QdScore);
            PerArchive(w, "coverage", g.Archives, tasks, a => a.Coverage);
            PerArchive(w, "best", g.Archives, tasks, a => a.Best);
            PerArchive(w, "elites", g.Archives, tasks, a => a.Elites);
            if (g.Evaluation is { } ev)
            {
                // Counts are a function of the child's weights (greedy decoding), so they stay outside "timing".
                w.WriteStartObject("evaluation");
                for (int t = 0; t < tasks.Count; t++)
                {
                    w.WriteStartObject(tasks[t]);
                    w.WriteNumber("model_calls", ev[t].ModelCalls);
                    w.WriteNumber("generated_tokens", ev[t].GeneratedTokens);
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteStartObject("timing");
            w.WriteNumber("breed_s", Math.Round(g.Timing.BreedSeconds, 6));
            w.WriteNumber("evaluate_s", Math.Round(g.Timing.EvaluateSeconds, 6));
            // Part of evaluate_s: handing the child's weights to the model (in place, or a copy out of the backend).
            if (g.BindSeconds is double bind) w.WriteNumber("bind_s", Math.Round(bind, 6));
            // The compute backend's device high-water mark since the previous generation (GPU runs); memory, not time, but as machine-dependent.
            if (g.PeakDeviceBytes is long peak) w.WriteNumber("peak_device_bytes", peak);
            w.WriteNumber("total_s", Math.Round(g.Timing.TotalSeconds, 6));
            w.WriteString("finished_utc", g.Timing.FinishedUtc.ToString("O", CultureInfo.InvariantCulture));
            // Which worker scored the child (runs with --workers); where, like when, is not part of the result.
            if (g.EvaluatedBy is { } worker) w.WriteString("worker", worker);
            if (g.Evaluation is { } et)
            {
                w.WriteStartObject("tasks");
                for (int t = 0; t < tasks.Count; t++)
                {
                    w.WriteStartObject(tasks[t]);
                    w.WriteNumber("generate_s", Math.Round(et[t].GenerateSeconds, 6));
                    w.WriteNumber("harness_s", Math.Round(et[t].HarnessSeconds, 6));
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        ms.WriteByte((byte)'\n');
        return ms.ToArray();
    }

    public static byte[] ArchiveFile(RunState s, IReadOnlyList<string> tasks, IReadOnlyList<Archive> archives)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, Indented))
        {
            w.WriteStartObject();
            w.WriteNumber("generations", s.NextGeneration);
            w.WriteStartArray("tasks");
            foreach (var t in tasks) w.WriteStringValue(t);
            w.WriteEndArray();
            w.WriteStartArray("archives");
            foreach (var a in archives)
            {
                w.WriteStartObject();
                w.WriteString("task", CycleQDOptions.QualityName(a.Task, tasks));
                w.WriteStartArray("bc");
                for (int d = 0; d < a.BcTasks.Count; d++)
                {
                    w.WriteStartObject();
                    w.WriteString("task", tasks[a.BcTasks[d]]);
                    w.WriteNumber("lower", a.Bins[d].Lower);
                    w.WriteNumber("upper", a.Bins[d].Upper);
                    w.WriteNumber("bins", a.Bins[d].Count);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteStartArray("cells");
                foreach (var (cell, e) in a.Cells)
                {
                    w.WriteStartObject();
                    Ints(w, "cell", a.Unflatten(cell));
                    w.WriteNumber("quality", a.QualityOf(e.Scores));
                    PerTask(w, "scores", tasks, t => e.Scores[t]);
                    w.WriteString("elite", e.Id);
                    w.WriteNumber("generation", e.Generation);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        ms.WriteByte((byte)'\n');
        return ms.ToArray();
    }

    private static void PerArchive(Utf8JsonWriter w, string name, IReadOnlyList<ArchiveSummary> archives, IReadOnlyList<string> tasks, Func<ArchiveSummary, double> value)
    {
        w.WriteStartObject(name);
        foreach (var a in archives)
        {
            double v = value(a);
            if (double.IsFinite(v)) w.WriteNumber(CycleQDOptions.QualityName(a.Task, tasks), v); else w.WriteNull(CycleQDOptions.QualityName(a.Task, tasks));
        }
        w.WriteEndObject();
    }

    private static void PerTask(Utf8JsonWriter w, string name, IReadOnlyList<string> tasks, Func<int, double> value)
    {
        w.WriteStartObject(name);
        for (int t = 0; t < tasks.Count; t++)
        {
            double v = value(t);
            if (double.IsFinite(v)) w.WriteNumber(tasks[t], v); else w.WriteNull(tasks[t]);
        }
        w.WriteEndObject();
    }

    private static void Doubles(Utf8JsonWriter w, string name, IReadOnlyList<double> values)
    {
        w.WriteStartArray(name);
        foreach (double v in values) w.WriteNumberValue(v);
        w.WriteEndArray();
    }

    private static void Ints(Utf8JsonWriter w, string name, IReadOnlyList<int> values)
    {
        w.WriteStartArray(name);
        foreach (int v in values) w.WriteNumberValue(v);
        w.WriteEndArray();
    }

    private static double[] ReadDoubles(JsonElement e) => e.EnumerateArray().Select(x => x.GetDouble()).ToArray();
}
