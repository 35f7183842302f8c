using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CycleQD.Core.Random;

namespace CycleQD.Runs.Families;

/// <summary>One task's search and report splits.</summary>
/// <param name="Search">Name of the split the search scores ("train", "valid", "test" or "all").</param>
/// <param name="Report">Name of the split the end-of-run table reports ("test").</param>
/// <param name="SearchIds">The search split's sample ids, in the task's order; null when the task reads a named split file (TinySkills' valid.jsonl).</param>
/// <param name="ReportIds">The report split's sample ids, likewise.</param>
public sealed record TaskSplit(string Search, string Report, IReadOnlyList<string>? SearchIds, IReadOnlyList<string>? ReportIds)
{
    /// <summary>The split name and ids of <paramref name="purpose"/>.</summary>
    public (string Name, IReadOnlyList<string>? Ids) For(EvaluationPurpose purpose) =>
        purpose == EvaluationPurpose.Search ? (Search, SearchIds) : (Report, ReportIds);
}

/// <summary>
/// The splits of every task of a run, fixed when the run starts and stored in its splits.json, so a
/// resume (and a later code version) scores exactly the same samples.
/// </summary>
/// <remarks>
/// The paper scores each benchmark on an even split into a training half (searched on) and a test
/// half (reported); the reference code scores every sample. <see cref="Halves"/> makes that split
/// from a seed: each id gets a Philox draw keyed by (seed, task name), ids are ordered by it, and the
/// first ⌈n/2⌉ are the training half. Both halves are kept in the benchmark's own id order.
/// </remarks>
public sealed class RunSplits
{
    /// <summary>The split seed used when the experiment names none (evaluation.split_seed).</summary>
    public const ulong DefaultSeed = 0;

    /// <summary>Per task.</summary>
    public IReadOnlyDictionary<string, TaskSplit> ByTask { get; }

    /// <summary>The seed <see cref="Halves"/> was drawn with.</summary>
    public ulong Seed { get; }

    /// <param name="byTask">Per task.</param>
    /// <param name="seed">The split seed.</param>
    public RunSplits(IReadOnlyDictionary<string, TaskSplit> byTask, ulong seed)
    {
        ByTask = byTask;
        Seed = seed;
    }

    /// <summary>The split of <paramref name="task"/>.</summary>
    public TaskSplit this[string task] => ByTask.TryGetValue(task, out var s) ? s
        : throw new KeyNotFoundException($"no split for task '{task}'");

    /// <summary>
    /// The training and test halves of <paramref name="ids"/> (a benchmark's sample ids in its own
    /// order) for <paramref name="task"/>: deterministic in (seed, task, ids); each half keeps that order.
    /// </summary>
    public static (IReadOnlyList<string> Train, IReadOnlyList<string> Test) Halves(IReadOnlyList<string> ids, string task, ulong seed)
    {
        uint key = TaskKey(task);
        var order = Enumerable.Range(0, ids.Count)
            .OrderBy(i => Philox4x32.Word(seed, key, 0, (ulong)i))
            .ThenBy(i => i)
            .ToArray();
        int train = (ids.Count + 1) / 2;
        var inTrain = new bool[ids.Count];
        foreach (int i in order.Take(train)) inTrain[i] = true;
        var a = new List<string>(train);
        var b = new List<string>(ids.Count - train);
        for (int i = 0; i < ids.Count; i++) (inTrain[i] ? a : b).Add(ids[i]);
        return (a, b);
    }

    /// <summary>FNV-1a of the task name: the stream key of its halves.</summary>
    private static uint TaskKey(string task)
    {
        uint h = 2166136261;
        foreach (byte b in Encoding.UTF8.GetBytes(task)) { h ^= b; h *= 16777619; }
        return h;
    }

    /// <summary>splits.json's bytes.</summary>
    public byte[] ToJson()
    {
        var tasks = new JsonObject();
        foreach (var (task, s) in ByTask)
            tasks[task] = new JsonObject
            {
                ["search"] = s.Search,
                ["report"] = s.Report,
                ["search_ids"] = s.SearchIds is null ? null : new JsonArray(s.SearchIds.Select(x => (JsonNode)x).ToArray()),
                ["report_ids"] = s.ReportIds is null ? null : new JsonArray(s.ReportIds.Select(x => (JsonNode)x).ToArray()),
            };
        var root = new JsonObject { ["format"] = 1, ["seed"] = Seed.ToString(System.Globalization.CultureInfo.InvariantCulture), ["tasks"] = tasks };
        return Encoding.UTF8.GetBytes(root.ToJsonString(Tensors.ReadableJson.Indented) + "\n");
    }

    /// <summary>Reads splits.json.</summary>
    /// <exception cref="RunDirectoryException">unreadable, or a task of <paramref name="tasks"/> is missing.</exception>
    public static RunSplits Read(string path, IReadOnlyList<string> tasks)
    {
        try
        {
            var root = JsonNode.Parse(File.ReadAllBytes(path))!.AsObject();
            ulong seed = ulong.Parse(root["seed"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture);
            var byTask = new Dictionary<string, TaskSplit>(StringComparer.Ordinal);
            var t = root["tasks"]!.AsObject();
            foreach (string task in tasks)
            {
                var o = t[task]?.AsObject() ?? throw new RunDirectoryException($"{path}: no split for task '{task}'");
                static IReadOnlyList<string>? Ids(JsonNode? n) => n?.AsArray().Select(x => x!.GetValue<string>()).ToArray();
                byTask[task] = new TaskSplit(o["search"]!.GetValue<string>(), o["report"]!.GetValue<string>(), Ids(o["search_ids"]), Ids(o["report_ids"]));
            }
            return new RunSplits(byTask, seed);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException or FormatException or IOException)
        {
            throw new RunDirectoryException($"{path}: unreadable ({e.Message})");
        }
    }
}
