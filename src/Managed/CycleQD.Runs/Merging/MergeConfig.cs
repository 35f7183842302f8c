using System.Globalization;
using CycleQD.Core;
using CycleQD.Tensors;
using YamlDotNet.RepresentationModel;

namespace CycleQD.Runs.Merging;

/// <summary>
/// A merge file in mergekit's YAML form (<c>mergekit-yaml</c>):
/// <code>
/// merge_method: ties            # linear | task_arithmetic | ties | dare_linear | dare_ties
/// base_model: path/to/base      # a Hugging Face folder; relative paths are relative to the YAML file
/// models:
///   - model: path/to/expert
///     parameters: {weight: 1.0, density: 0.2}
/// parameters:                   # method parameters, and defaults for every model's weight and density
///   normalize: true
///   lambda: 1.0
///   rescale: true               # DARE
///   trim_scope: tensor          # TIES: tensor (mergekit) or model (one top fraction over all tensors)
/// random_seed: 0                # DARE's drop draws
/// dtype: bfloat16               # float32 | float16 | bfloat16 (default: each tensor's type in the base)
/// </code>
/// A <c>models</c> entry naming the base model itself is skipped by the task-vector methods, as in
/// mergekit. mergekit's <c>int8_mask</c> is accepted and has no effect (merging is in float32).
/// Not supported, with an error naming the key: <c>slices</c>, per-layer lists (gradients) and
/// filters, and <c>tokenizer_source</c> other than <c>base</c>. Every unknown key or bad value
/// raises one <see cref="ConfigurationException"/> naming the file, the line and the key.
/// </summary>
public sealed record MergeConfig(MergeSpec Spec, string SourcePath, string Text)
{
    /// <summary>Reads and validates a merge file.</summary>
    public static MergeConfig Load(string path)
    {
        path = Path.GetFullPath(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"merge file not found: {path}", path);
        string text = File.ReadAllText(path);
        return new MergeConfig(Parse(text, path, Path.GetDirectoryName(path)!), path, text);
    }

    /// <summary>Parses YAML text; <paramref name="source"/> names it in errors, <paramref name="baseDirectory"/> anchors relative paths.</summary>
    public static MergeSpec Parse(string yaml, string source, string baseDirectory)
    {
        var root = YamlSettings.LoadRoot(yaml, source);
        var r = new YamlSettings(source, listNote: "lists (per-layer gradients) are not supported; give one value");
        var top = r.Map(root, "", "merge_method", "base_model", "models", "parameters", "dtype", "random_seed", "int8_mask", "tokenizer_source", "slices");
        if (top.TryGetValue("slices", out var slices))
            throw r.Error(slices!, "slices", "slices are not supported; list the whole models under 'models:'");
        if (top.TryGetValue("tokenizer_source", out var ts) && r.Scalar(ts!, "tokenizer_source") != "base")
            throw r.Error(ts!, "tokenizer_source", "only 'base' is supported (config and tokenizer files are copied from the base model)");

        if (!top.TryGetValue("merge_method", out var mm) || mm is null)
            throw new ConfigurationException($"{source}: merge_method is required ({string.Join(", ", MergeSpec.MethodNames.Values)})");
        string methodName = r.Scalar(mm, "merge_method");
        var method = MergeSpec.MethodNames.FirstOrDefault(kv => kv.Value == methodName);
        if (method.Value is null)
            throw r.Error(mm, "merge_method", $"'{methodName}' is not one of {string.Join(", ", MergeSpec.MethodNames.Values)}");

        string? basePath = top.TryGetValue("base_model", out var bm) && bm != null ? Resolve(baseDirectory, r.Scalar(bm, "base_model")) : null;
        if (basePath is null && method.Key != MergeMethod.Linear)
            throw new ConfigurationException($"{source}: base_model is required by {methodName}");

        var global = top.TryGetValue("parameters", out var pNode) && pNode != null
            ? r.Map(pNode, "parameters", "weight", "density", "normalize", "lambda", "rescale", "trim_scope", "int8_mask")
            : new Dictionary<string, YamlNode?>();
        float defaultWeight = r.Float(global, "weight", 1f, "parameters.");
        float defaultDensity = r.Float(global, "density", 1f, "parameters.");

        if (!top.TryGetValue("models", out var modelsNode) || modelsNode is not YamlSequenceNode list || list.Children.Count == 0)
            throw new ConfigurationException($"{source}: models is required (a list of '- model: PATH' entries)");
        var models = new List<MergeModel>();
        for (int i = 0; i < list.Children.Count; i++)
        {
            string at = $"models[{i}]";
            var entry = r.Map(list.Children[i], at, "model", "parameters");
            if (!entry.TryGetValue("model", out var pathNode) || pathNode is null)
                throw r.Error(list.Children[i], at, "'model: PATH' is required");
            string path = Resolve(baseDirectory, r.Scalar(pathNode, at + ".model"));
            var p = entry.TryGetValue("parameters", out var mp) && mp != null ? r.Map(mp, at + ".parameters", "weight", "density") : [];
            var model = new MergeModel(path, r.Float(p, "weight", defaultWeight, at + ".parameters."), r.Float(p, "density", defaultDensity, at + ".parameters."));
            if (method.Key != MergeMethod.Linear && path == basePath) continue;
            models.Add(model);
        }
        if (models.Count == 0) throw r.Error(modelsNode, "models", "no model to merge besides the base model");

        DType? dtype = null;
        if (top.TryGetValue("dtype", out var dNode) && dNode != null)
        {
            string d = r.Scalar(dNode, "dtype");
            dtype = d.ToLowerInvariant() switch
            {
                "float32" or "fp32" or "f32" => DType.F32,
                "float16" or "fp16" or "f16" or "half" => DType.F16,
                "bfloat16" or "bf16" => DType.BF16,
                _ => throw r.Error(dNode, "dtype", $"'{d}' is not float32, float16 or bfloat16"),
            };
        }
        var spec = new MergeSpec(method.Key, basePath, models)
        {
            Lambda = r.Float(global, "lambda", 1f, "parameters."),
            Normalize = global.ContainsKey("normalize") ? r.Bool(global, "normalize", false, "parameters.") : null,
            Rescale = r.Bool(global, "rescale", true, "parameters."),
            TrimScope = r.String(global, "trim_scope", "tensor", "parameters.") switch
            {
                "tensor" => TrimScope.Tensor,
                "model" => TrimScope.Model,
                var s => throw r.Error(global["trim_scope"]!, "parameters.trim_scope", $"'{s}' is not tensor or model"),
            },
            Seed = r.ULong(top, "random_seed", 0),
            OutputDType = dtype,
        };
        bool dare = method.Key is MergeMethod.DareLinear or MergeMethod.DareTies;
        for (int i = 0; i < models.Count; i++)
        {
            float d = models[i].Density;
            if (dare ? !(d > 0 && d <= 1) : !(d >= 0 && d <= 1))
                throw new ConfigurationException($"{source}: {models[i].Path}: density {d.ToString(CultureInfo.InvariantCulture)} must be in {(dare ? "(0, 1]" : "[0, 1]")}");
        }
        return spec;
    }

    private static string Resolve(string baseDirectory, string path) =>
        Path.TrimEndingDirectorySeparator(Path.GetFullPath(Path.Combine(baseDirectory, path)));
}
