using System.Globalization;
using CycleQD.Core;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace CycleQD.Runs;

/// <summary>
/// Typed access to the settings of a YAML file (experiment and merge files), with errors that name
/// the file, the key and the line.
/// </summary>
/// <param name="source">The file, as errors name it.</param>
/// <param name="listNote">What to say when a list stands where one value is expected (null: "expected a single value").</param>
internal sealed class YamlSettings(string source, string? listNote = null)
{
    /// <summary>The top-level mapping of <paramref name="yaml"/> (empty for an empty document).</summary>
    /// <exception cref="ConfigurationException">invalid YAML (with its line), or a top level that is not a mapping.</exception>
    public static YamlMappingNode LoadRoot(string yaml, string source)
    {
        try
        {
            var stream = new YamlStream();
            stream.Load(new StringReader(yaml));
            return stream.Documents.Count == 0 ? new YamlMappingNode() : stream.Documents[0].RootNode as YamlMappingNode
                ?? throw new ConfigurationException($"{source}: the top level must be a mapping of settings");
        }
        catch (YamlException e)
        {
            throw new ConfigurationException($"{source}: line {e.Start.Line}: {e.Message}");
        }
    }

    public string Source => source;

    public ConfigurationException Error(YamlNode node, string key, string what) =>
        new($"{source}: line {node.Start.Line}: {key}: {what}");

    public Dictionary<string, YamlNode?> Map(YamlNode node, string path, params string[]? allowed)
    {
        if (node is not YamlMappingNode map) throw Error(node, path.Length == 0 ? "(top level)" : path, "expected a mapping of settings");
        var d = new Dictionary<string, YamlNode?>(StringComparer.Ordinal);
        foreach (var (k, v) in map.Children)
        {
            string key = ((YamlScalarNode)k).Value ?? "";
            string full = path.Length == 0 ? key : path + "." + key;
            if (allowed != null && !allowed.Contains(key))
                throw Error(k, full, $"unknown setting (known here: {string.Join(", ", allowed)})");
            if (!d.TryAdd(key, v)) throw Error(k, full, "given twice");
        }
        return d;
    }

    /// <summary>The text of a scalar node; a list or a mapping is an error naming <paramref name="key"/>.</summary>
    public string Scalar(YamlNode node, string key)
    {
        if (node is YamlSequenceNode && listNote != null) throw Error(node, key, listNote);
        if (node is not YamlScalarNode { Value: { } v }) throw Error(node, key, "expected a single value");
        return v;
    }

    // A missing key, or one with no value, takes the default.
    private string? Scalar(Dictionary<string, YamlNode?> m, string key, string prefix) =>
        !m.TryGetValue(key, out var n) || n is null || n is YamlScalarNode { Value: null } ? null : Scalar(n, prefix + key);

    public string String(Dictionary<string, YamlNode?> m, string key, string dflt, string prefix = "") => Scalar(m, key, prefix) ?? dflt;

    public int Int(Dictionary<string, YamlNode?> m, string key, int dflt, string prefix = "")
    {
        string? v = Scalar(m, key, prefix);
        if (v is null) return dflt;
        return int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int x) ? x : throw Error(m[key]!, prefix + key, $"'{v}' is not an integer");
    }

    public ulong ULong(Dictionary<string, YamlNode?> m, string key, ulong dflt, string prefix = "")
    {
        string? v = Scalar(m, key, prefix);
        if (v is null) return dflt;
        return ulong.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong x) ? x : throw Error(m[key]!, prefix + key, $"'{v}' is not a non-negative integer");
    }

    /// <summary>A finite float32.</summary>
    public float Float(Dictionary<string, YamlNode?> m, string key, float dflt, string prefix = "")
    {
        string? v = Scalar(m, key, prefix);
        if (v is null) return dflt;
        return float.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out float x) && float.IsFinite(x)
            ? x : throw Error(m[key]!, prefix + key, $"'{v}' is not a number");
    }

    public double Double(Dictionary<string, YamlNode?> m, string key, double dflt, string prefix = "")
    {
        string? v = Scalar(m, key, prefix);
        if (v is null) return dflt;
        return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) ? x : throw Error(m[key]!, prefix + key, $"'{v}' is not a number");
    }

    public bool Bool(Dictionary<string, YamlNode?> m, string key, bool dflt, string prefix = "")
    {
        string? v = Scalar(m, key, prefix);
        if (v is null) return dflt;
        return v switch { "true" or "yes" => true, "false" or "no" => false, _ => throw Error(m[key]!, prefix + key, $"'{v}' is not true or false") };
    }

    public T Enum<T>(Dictionary<string, YamlNode?> m, string key, T dflt, string prefix = "") where T : struct, System.Enum
    {
        string? v = Scalar(m, key, prefix);
        if (v is null) return dflt;
        foreach (var name in System.Enum.GetNames<T>())
            if (string.Equals(name, v, StringComparison.OrdinalIgnoreCase)) return System.Enum.Parse<T>(name);
        throw Error(m[key]!, prefix + key, $"'{v}' is not one of {string.Join(", ", System.Enum.GetNames<T>().Select(n => n.ToLowerInvariant()))}");
    }

    public List<string>? StringList(Dictionary<string, YamlNode?> m, string key)
    {
        if (!m.TryGetValue(key, out var n) || n is null) return null;
        if (n is not YamlSequenceNode seq) throw Error(n, key, "expected a list");
        return seq.Children.Select(c => (c as YamlScalarNode)?.Value ?? throw Error(c, key, "expected names")).ToList();
    }

    public List<double> DoubleList(YamlNode n, string key)
    {
        if (n is not YamlSequenceNode seq) throw Error(n, key, "expected a list of numbers");
        return seq.Children.Select(c => c is YamlScalarNode { Value: { } v } && double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x)
            ? x : throw Error(c, key, "expected a number")).ToList();
    }
}
