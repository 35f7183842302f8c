using System.Globalization;
using CycleQD.Core;
using CycleQD.Cpu.Merging;
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
///   rescale: true               # ties, DARE: true (restore each task vector's L1 norm) | false | inverse_density (DARE only)
///   trim_scope: tensor          # ties: tensor (mergekit) or model (one top fraction over all tensors)
/// random_seed: 0                # DARE's drop draws
/// dtype: bfloat16               # float32 | float16 | bfloat16 (default: each tensor's type in the base)
/// </code>
/// Every merged model needs a <c>weight</c>, its own or the one under <c>parameters:</c> (mergekit's
/// rule; a <c>models</c> entry naming the base model itself needs none: the task-vector methods skip
/// it, as mergekit does). A parameter the method does not take (<see cref="MergeMethodInfo"/>), such
/// as <c>trim_scope</c> with <c>dare_linear</c> or <c>density</c> with <c>task_arithmetic</c>, is refused
/// with an error naming the key. mergekit's <c>int8_mask</c> is accepted where mergekit takes it and
/// has no effect (merging is in float32). Not supported, with an error naming the key:
/// <c>slices</c>, per-layer lists (gradients) and filters, and <c>tokenizer_source</c> other than
/// <c>base</c>. Every unknown key or bad value raises one <see cref="ConfigurationException"/> naming
/// the file, the line and the key.
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

        string? basePath = top.TryGetValue("base_model", out var bm) && bm != null ? LocalModel(r, bm, "base_model", baseDirectory) : null;
        if (basePath is null && method.Key != MergeMethod.Linear)
            throw new ConfigurationException($"{source}: base_model is required by {methodName}");

        var info = MergeSpec.Methods[method.Key];
        var global = top.TryGetValue("parameters", out var pNode) && pNode != null
            ? r.Map(pNode, "parameters", [.. MergeMethodInfo.AllParameters])
            : new Dictionary<string, YamlNode?>();
        foreach (var key in global.Keys)
            if (!info.Takes(key)) throw r.Error(KeyNode(pNode!, key), "parameters." + key, info.DoesNotApply(key));
        if (top.ContainsKey("random_seed") && !info.Seeded)
            throw r.Error(KeyNode(root, "random_seed"), "random_seed", $"does not apply to {methodName} (only dare_linear and dare_ties draw random numbers)");
        if (top.ContainsKey("int8_mask") && !info.Takes("int8_mask"))
            throw r.Error(KeyNode(root, "int8_mask"), "int8_mask", info.DoesNotApply("int8_mask"));
        float? defaultWeight = global.ContainsKey("weight") ? r.Float(global, "weight", 1f, "parameters.") : null;
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
            string path = LocalModel(r, pathNode, at + ".model", baseDirectory);
            var p = entry.TryGetValue("parameters", out var mp) && mp != null ? r.Map(mp, at + ".parameters", [.. MergeMethodInfo.AllModelParameters]) : [];
            foreach (var key in p.Keys)
                if (!info.ModelParameters.Contains(key))
                    throw r.Error(KeyNode(mp!, key), $"{at}.parameters.{key}", info.DoesNotApply(key));
            if (method.Key != MergeMethod.Linear && path == basePath) continue;
            float density = r.Float(p, "density", defaultDensity, at + ".parameters.");
            float weight = p.ContainsKey("weight") ? r.Float(p, "weight", 1f, at + ".parameters.")
                : defaultWeight ?? throw r.Error(list.Children[i], at,
                    $"{r.Scalar(pathNode, at + ".model")}: weight is required (give it under the model's parameters, or once under parameters:), as in mergekit");
            models.Add(new MergeModel(path, weight, density));
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
            Rescale = global.ContainsKey("rescale") ? ParseRescale(r, global, method.Key) : null,
            TrimScope = r.String(global, "trim_scope", "tensor", "parameters.") switch
            {
                "tensor" => TrimScope.Tensor,
                "model" => TrimScope.Model,
                var s => throw r.Error(global["trim_scope"]!, "parameters.trim_scope", $"'{s}' is not tensor or model"),
            },
            Seed = r.ULong(top, "random_seed", 0),
            OutputDType = dtype,
        };
        bool sparsifies = method.Key is MergeMethod.Ties or MergeMethod.DareLinear or MergeMethod.DareTies;
        for (int i = 0; sparsifies && i < models.Count; i++)
        {
            float d = models[i].Density;
            if (!(d > 0 && d <= 1))
                throw new ConfigurationException($"{source}: {models[i].Path}: density {d.ToString(CultureInfo.InvariantCulture)} must be in (0, 1]");
        }
        return spec;
    }

    private static MergeRescale ParseRescale(YamlSettings r, Dictionary<string, YamlNode?> global, MergeMethod method)
    {
        string v = r.String(global, "rescale", "", "parameters.");
        return v switch
        {
            "true" or "yes" => MergeRescale.L1Norm,
            "false" or "no" => MergeRescale.None,
            "inverse_density" when method is MergeMethod.DareLinear or MergeMethod.DareTies => MergeRescale.InverseDensity,
            "inverse_density" => throw r.Error(global["rescale"]!, "parameters.rescale", "inverse_density is DARE's rescale (dare_linear, dare_ties); ties takes true or false"),
            _ => throw r.Error(global["rescale"]!, "parameters.rescale", $"'{v}' is not true, false or inverse_density"),
        };
    }

    /// <summary>The key node of <paramref name="key"/> in a mapping, so an error points at the key's line.</summary>
    private static YamlNode KeyNode(YamlNode map, string key) =>
        ((YamlMappingNode)map).Children.Keys.First(k => k is YamlScalarNode { Value: var v } && v == key);

    /// <summary>
    /// The model path at <paramref name="node"/>, resolved against <paramref name="baseDirectory"/>.
    /// A path that does not exist and reads like a Hugging Face Hub id ("meta-llama/Meta-Llama-3-8B")
    /// is refused with how to get a local copy: this build reads local folders only.
    /// </summary>
    private static string LocalModel(YamlSettings r, YamlNode node, string key, string baseDirectory)
    {
        string given = r.Scalar(node, key);
        string path = Resolve(baseDirectory, given);
        if (!Directory.Exists(path) && !File.Exists(path) && LooksLikeHubId(given))
            throw r.Error(node, key, $"'{given}' is not a local folder ({path} does not exist); only local model folders are supported. " +
                $"Download it first, e.g. huggingface-cli download {given} --local-dir models/{given[(given.IndexOf('/') + 1)..]}, and give that folder");
        return path;
    }

    /// <summary>owner/name with no other separator, as Hub ids are written (not ./x, ../x, /x or a/b/c).</summary>
    internal static bool LooksLikeHubId(string s)
    {
        int slash = s.IndexOf('/');
        if (slash <= 0 || slash != s.LastIndexOf('/') || slash == s.Length - 1 || s.Contains('\\')) return false;
        static bool Part(string p) => p[0] is not '.' && p.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');
        return Part(s[..slash]) && Part(s[(slash + 1)..]);
    }

    private static string Resolve(string baseDirectory, string path) =>
        Path.TrimEndingDirectorySeparator(Path.GetFullPath(Path.Combine(baseDirectory, path)));
}
