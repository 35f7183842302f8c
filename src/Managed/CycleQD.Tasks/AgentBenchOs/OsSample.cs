using System.Text.Json;
using CycleQD.Tasks.Prompts;

namespace CycleQD.Tasks.AgentBenchOs;

/// <summary>A (language, script) pair of the judge config; language is "bash" or "python".</summary>
public sealed record OsScript(string Language, string Script);

/// <summary>One AgentBench OS sample (samples.json; data README §2).</summary>
/// <param name="Index">Sample id (position in samples.json).</param>
/// <param name="Problem">The 7 opening chat messages (prompt + one-shot + the problem).</param>
/// <param name="File">Source problem file (for per-file metrics).</param>
/// <param name="InitScripts">Run first, each as an independent process.</param>
/// <param name="Start">Typed into the agent's shell before the first turn; null if none.</param>
/// <param name="Check">Check scripts (null entries mean the example script); null for match tasks.</param>
/// <param name="MatchAnswer">The exact answer for match tasks; null for check tasks.</param>
/// <param name="MatchStrip">Strip the answer before comparing.</param>
/// <param name="ExampleScript">The reference solution; null if the data has none.</param>
public sealed record OsSample(int Index, IReadOnlyList<ChatMessage> Problem, string File, IReadOnlyList<OsScript> InitScripts,
    OsScript? Start, IReadOnlyList<OsScript?>? Check, string? MatchAnswer, bool MatchStrip, OsScript? ExampleScript)
{
    /// <summary>Loads samples.json; errors name the file and sample.</summary>
    public static IReadOnlyList<OsSample> Load(string path)
    {
        if (!System.IO.File.Exists(path)) throw new FileNotFoundException($"AgentBench OS data not found: {path}", path);
        using var doc = JsonDocument.Parse(System.IO.File.ReadAllText(path));
        var list = new List<OsSample>();
        foreach (var s in doc.RootElement.EnumerateArray())
        {
            int index = list.Count;
            try
            {
                var problem = s.GetProperty("problem").EnumerateArray()
                    .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList();
                var cfgPair = s.GetProperty("config");
                var cfg = cfgPair.GetProperty("config");
                var init = cfg.GetProperty("init_script").ValueKind == JsonValueKind.Array
                    ? cfg.GetProperty("init_script").EnumerateArray().Select(ReadScript).ToList() : new List<OsScript>();
                OsScript? start = cfg.GetProperty("start").ValueKind == JsonValueKind.Array ? ReadScript(cfg.GetProperty("start")) : null;
                List<OsScript?>? check = cfg.GetProperty("check").ValueKind == JsonValueKind.Array
                    ? cfg.GetProperty("check").EnumerateArray().Select(c => c.ValueKind == JsonValueKind.Null ? null : ReadScript(c)).ToList() : null;
                string? answer = null;
                bool strip = false;
                if (cfg.GetProperty("match").ValueKind == JsonValueKind.Object)
                {
                    var m = cfg.GetProperty("match");
                    answer = m.TryGetProperty("answer", out var a) ? a.GetString() : throw new InvalidDataException("match without \"answer\" (regex matches are not in the data)");
                    strip = m.TryGetProperty("strip", out var st) && st.ValueKind == JsonValueKind.True;
                }
                OsScript? example = cfg.GetProperty("example_script").ValueKind == JsonValueKind.Array ? ReadScript(cfg.GetProperty("example_script")) : null;
                list.Add(new OsSample(index, problem, cfgPair.GetProperty("file").GetString()!, init, start, check, answer, strip, example));
            }
            catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or InvalidDataException)
            {
                throw new InvalidDataException($"{path}: sample {index} is not a valid AgentBench OS sample: {e.Message}", e);
            }
        }
        return list;
    }

    private static OsScript ReadScript(JsonElement e) => new(e[0].GetString()!, e[1].GetString()!);

    /// <summary>The ids CycleQD evaluates (task_ids.json "task_ids").</summary>
    public static IReadOnlyList<int> LoadTaskIds(string path)
    {
        if (!System.IO.File.Exists(path)) throw new FileNotFoundException($"task id list not found: {path}", path);
        using var doc = JsonDocument.Parse(System.IO.File.ReadAllText(path));
        return doc.RootElement.GetProperty("task_ids").EnumerateArray().Select(e => e.GetInt32()).ToList();
    }
}
