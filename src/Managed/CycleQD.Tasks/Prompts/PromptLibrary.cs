using System.Text.Json;

namespace CycleQD.Tasks.Prompts;

/// <summary>The reference's prompt strings (shared/data/cycleqd_prompts.json, data README §7).</summary>
public sealed class PromptLibrary
{
    private readonly Dictionary<string, string> _items;

    private PromptLibrary(Dictionary<string, string> items) => _items = items;

    /// <summary>Loads cycleqd_prompts.json; a missing file or key is reported with the path.</summary>
    public static PromptLibrary Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"prompt file not found: {path}", path);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var items = new Dictionary<string, string>();
        if (!doc.RootElement.TryGetProperty("items", out var all))
            throw new InvalidDataException($"{path}: no \"items\" object");
        foreach (var p in all.EnumerateObject())
            items[p.Name] = p.Value.GetProperty("text").GetString() ?? throw new InvalidDataException($"{path}: item {p.Name} has no text");
        return new PromptLibrary(items);
    }

    /// <summary>The text of one item, e.g. "agentbench_db.prompt_template".</summary>
    public string this[string key] => _items.TryGetValue(key, out var v) ? v : throw new InvalidDataException($"cycleqd_prompts.json has no item '{key}'");
}
