using System.Text.Json;
using CycleQD.Tensors;

namespace CycleQD.Runs.Families;

/// <summary>
/// Tells which family a model folder belongs to by its config.json's model_type, so a verb given
/// the wrong kind of model says which kind it got and which it needs, instead of failing later on
/// a field the other kind's config does not have.
/// </summary>
public static class ModelKindCheck
{
    /// <summary>The model_type of <paramref name="folder"/>'s config.json.</summary>
    /// <exception cref="TensorFormatException">no such folder, no config.json, invalid JSON, or no string model_type.</exception>
    public static string ModelTypeOf(string folder)
    {
        folder = Path.GetFullPath(folder);
        if (!Directory.Exists(folder))
            throw new TensorFormatException(folder, null, File.Exists(folder) ? "is a file; expected a model folder" : "no such folder");
        string configPath = Path.Combine(folder, "config.json");
        if (!File.Exists(configPath)) throw new TensorFormatException(configPath, null, "missing (not a Hugging Face model folder?)");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(configPath));
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("model_type", out var t) && t.ValueKind == JsonValueKind.String
                ? t.GetString()!
                : throw new TensorFormatException(configPath, null, "missing \"model_type\" (it says which kind of model the folder holds)");
        }
        catch (JsonException e)
        {
            throw new TensorFormatException(configPath, null, "invalid JSON: " + e.Message, e);
        }
    }

    /// <summary>The real-model family whose models have <paramref name="modelType"/>, or null.</summary>
    public static IModelFamily? FamilyOf(string modelType) =>
        ModelFamilies.RealModels.FirstOrDefault(f => f.ModelTypes.Contains(modelType, StringComparer.Ordinal));

    /// <summary>The family of <paramref name="folder"/>'s model, or null when its config.json is missing, unreadable or of an unknown model_type.</summary>
    public static IModelFamily? TryFamilyOfFolder(string folder)
    {
        try { return FamilyOf(ModelTypeOf(folder)); }
        catch (TensorFormatException) { return null; }
    }

    /// <summary>
    /// Checks that <paramref name="folder"/> holds a model of <paramref name="family"/>; <paramref name="use"/>
    /// names what needs it in the message ("generate", "eval --task tinyskills/code").
    /// </summary>
    /// <exception cref="TensorFormatException">the folder cannot be read, or its model_type is another family's or unknown (names the config.json, the kind found and the kind needed).</exception>
    public static void Require(string folder, IModelFamily family, string use)
    {
        string type = ModelTypeOf(folder);
        if (family.ModelTypes.Contains(type, StringComparer.Ordinal)) return;
        string configPath = Path.Combine(Path.GetFullPath(folder), "config.json");
        string found = FamilyOf(type) is { } other
            ? $"model_type \"{type}\": this is {other.ModelKind}"
            : $"model_type \"{type}\" is not a kind of model this build runs (known: {string.Join("; ", ModelFamilies.RealModels.Select(Describe))})";
        throw new TensorFormatException(configPath, null, $"{found}; {use} needs {Describe(family)}");
    }

    private static string Describe(IModelFamily f) => $"{f.ModelKind} (model_type {string.Join(" or ", f.ModelTypes)})";
}
