using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using CycleQD.Tensors;

namespace CycleQD.Cli;

/// <summary>Options of the verbs that write a Hugging Face model folder (merge, export).</summary>
internal static class ModelFolderOptions
{
    public static readonly Option<string> MaxShardSize = new("--max-shard-size")
    {
        Description = "Largest weight file, e.g. 5GB, 500MB, 2000000 (bytes); larger models are sharded with model.safetensors.index.json.",
        DefaultValueFactory = _ => "5GB",
    };

    public static readonly Option<string?> Scores = new("--scores")
    {
        Description = "A JSON file of measured scores ({\"name\": number, …}) to put in the model card.",
    };

    public static readonly Option<bool> NoHash = new("--no-hash")
    {
        Description = "Do not compute the SHA-256 of the input weight files for the model card.",
    };

    public static long ParseShardSize(ParseResult parse)
    {
        string text = parse.GetValue(MaxShardSize) ?? "5GB";
        return ParseSize(text) ?? throw new CliUsageException($"--max-shard-size: '{text}' is not a size (e.g. 5GB, 500MB, 64KB or a number of bytes)");
    }

    /// <summary>Bytes from "5GB", "500MB", "64KB", "2000000" (decimal units, as Hugging Face uses them); null when unreadable or not positive.</summary>
    internal static long? ParseSize(string text)
    {
        string t = text.Trim().ToUpperInvariant();
        long unit = 1;
        foreach (var (suffix, bytes) in new[] { ("GB", 1_000_000_000L), ("MB", 1_000_000L), ("KB", 1_000L), ("B", 1L) })
            if (t.EndsWith(suffix, StringComparison.Ordinal)) { unit = bytes; t = t[..^suffix.Length].Trim(); break; }
        if (!double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !(v > 0) || v * unit > long.MaxValue / 2) return null;
        long size = (long)(v * unit);
        return size >= 1 ? size : null;
    }

    public static IReadOnlyDictionary<string, double>? ReadScores(string? path)
    {
        if (path is null) return null;
        if (!File.Exists(path)) throw new FileNotFoundException($"--scores: file not found: {path}", path);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new CliUsageException($"--scores {path}: expected a JSON object of name: number");
            var d = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var p in doc.RootElement.EnumerateObject())
                d[p.Name] = p.Value.ValueKind == JsonValueKind.Number ? p.Value.GetDouble()
                    : throw new CliUsageException($"--scores {path}: '{p.Name}' is not a number");
            return d;
        }
        catch (JsonException e)
        {
            throw new CliUsageException($"--scores {path}: invalid JSON: {e.Message}");
        }
    }
}
