using CycleQD.Cpu.Merging;
using CycleQD.Tensors;

namespace CycleQD.Runs.Merging;

/// <summary>Options of <see cref="MergeOutput.Write"/>.</summary>
/// <param name="MaxShardBytes">Largest weight file; larger models are sharded with an index.</param>
/// <param name="ConfigText">The merge file's text, shown in the card (null: not shown).</param>
/// <param name="Scores">Measured scores (name → value) for the card; null or empty: none.</param>
/// <param name="HashInputs">Put the SHA-256 of every input weight file in the card (reads each file once more).</param>
/// <param name="Progress">Called after each tensor is merged with (tensors done, tensors in all, values done, values in all); null: silent.</param>
public sealed record MergeOutputOptions(long MaxShardBytes = SafetensorsWriter.DefaultMaxShardBytes, string? ConfigText = null,
    IReadOnlyDictionary<string, double>? Scores = null, bool HashInputs = true, Action<int, int, long, long>? Progress = null);

/// <summary>What <see cref="MergeOutput.Write"/> produced.</summary>
/// <param name="Directory">The output folder.</param>
/// <param name="Files">Files written, weights first, README.md last.</param>
/// <param name="Tensors">Number of tensors merged.</param>
/// <param name="Elements">Number of values merged.</param>
public sealed record MergeOutputResult(string Directory, IReadOnlyList<string> Files, int Tensors, long Elements);

/// <summary>Makes a merged Hugging Face model folder from a <see cref="MergeSpec"/>.</summary>
public static class MergeOutput
{
    /// <summary>
    /// Merges and writes <paramref name="directory"/> (absent or empty): weights, config.json and
    /// tokenizer files of the base model (or the first model for linear without a base), and a
    /// README.md saying how the model was made.
    /// </summary>
    /// <exception cref="TensorFormatException">an input model is missing, corrupt, or incompatible with the base.</exception>
    /// <exception cref="RunDirectoryException">the output folder is a file or not empty.</exception>
    public static MergeOutputResult Write(MergeSpec spec, string directory, MergeOutputOptions? options = null)
    {
        options ??= new MergeOutputOptions();
        using var merge = ModelMerge.Open(spec);
        // The reference model's family says what its folder must hold and which files travel (a SAM merge has no tokenizer).
        var source = (Families.ModelKindCheck.TryFamilyOfFolder(merge.ReferencePath) ?? (Families.IModelFamily)Families.ModelFamilies.Llama).CarriedFiles(merge.ReferencePath);
        string card = Card(merge, options);
        return HfFolderOutput.WriteOrClean(directory, dir =>
        {
            var files = HfFolderOutput.Write(dir, source, merge.OutputTensors(options.Progress), options.MaxShardBytes, card);
            return new MergeOutputResult(dir, files, merge.Tensors.Count, merge.Tensors.Sum(t => t.ElementCount));
        });
    }

    private static string Card(ModelMerge merge, MergeOutputOptions options)
    {
        var spec = merge.Spec;
        var card = new ModelCardText($"{spec.MethodName} merge of {spec.Models.Count} model{(spec.Models.Count == 1 ? "" : "s")}",
            spec.BaseModel, "merge", "cycleqd", spec.MethodName);
        card.Paragraph($"Made with `cycleqd merge` (CycleQD.Native): a one-shot **{spec.MethodName}** merge computed on the CPU in float32, " +
                       "one tensor at a time. Every input had the base's tensor names and shapes.");
        card.Paragraph(Formula(spec));

        card.Heading("Inputs");
        var rows = new List<IReadOnlyList<string>>();
        void AddRows(string role, string path, string weight, string density)
        {
            if (!options.HashInputs) { rows.Add([role, path, weight, density, "(not hashed)"]); return; }
            foreach (var (file, sha) in HfFolderOutput.WeightFileHashes(path))
                rows.Add([role, path, weight, density, $"{file} {sha}"]);
        }
        if (spec.BaseModel != null) AddRows("base", spec.BaseModel, "", "");
        for (int i = 0; i < spec.Models.Count; i++)
        {
            var m = spec.Models[i];
            bool usesDensity = spec.Method is MergeMethod.Ties or MergeMethod.DareLinear or MergeMethod.DareTies;
            AddRows($"model {i}", m.Path, ModelCardText.Number(m.Weight), usesDensity ? ModelCardText.Number(m.Density) : "");
        }
        card.Table(["role", "path", "weight", "density", "weight file sha256"], rows);

        card.Heading("Parameters");
        var p = new List<IReadOnlyList<string>> { new[] { "merge_method", spec.MethodName } };
        if (spec.Method != MergeMethod.Linear) p.Add(["lambda", ModelCardText.Number(spec.Lambda)]);
        p.Add(["normalize", spec.EffectiveNormalize ? "true" : "false"]);
        if (spec.Info.Takes("trim_scope")) p.Add(["trim_scope", spec.TrimScope == TrimScope.Model ? "model" : "tensor"]);
        if (spec.Info.Takes("rescale")) p.Add(["rescale", RescaleName(spec.EffectiveRescale)]);
        if (spec.Info.Seeded) p.Add(["random_seed", spec.Seed.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        p.Add(["dtype", spec.OutputDType is { } dt ? DTypes.Name(dt) : "as the base"]);
        if (merge.ModelTrims is { } trims)
            for (int i = 0; i < trims.Count; i++)
            {
                p.Add([$"model {i}: smallest |τ| kept", ModelCardText.Number(trims[i].Threshold)]);
                if (trims[i].TiesKept != MagnitudeThreshold.AllTies)
                    p.Add([$"model {i}: entries at that |τ| kept (first in name and element order)", trims[i].TiesKept.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            }
        card.Table(["parameter", "value"], p);

        if (options.Scores is { Count: > 0 } scores)
        {
            card.Heading("Scores");
            card.Table(["benchmark", "score"], scores.Select(kv => (IReadOnlyList<string>)[kv.Key, ModelCardText.Number(kv.Value)]));
        }
        if (options.ConfigText != null)
        {
            card.Heading("Merge file");
            card.Code("yaml", options.ConfigText);
        }
        return card.ToString();
    }

    private static string RescaleName(MergeRescale r) => r switch
    {
        MergeRescale.L1Norm => "true (each task vector's L1 norm per tensor restored)",
        MergeRescale.InverseDensity => "inverse_density (kept entries × 1/density)",
        _ => "false",
    };

    private static string RescaleText(MergeSpec spec) => spec.EffectiveRescale switch
    {
        MergeRescale.L1Norm => " and rescaled so that, per tensor, Σ|τ̂ᵢ| = Σ|τᵢ|",
        MergeRescale.InverseDensity => " and scaled by 1/densityᵢ",
        _ => "",
    };

    private static string Formula(MergeSpec spec) => spec.Method switch
    {
        MergeMethod.Linear => "θ = Σᵢ wᵢ θᵢ" + (spec.EffectiveNormalize ? " / Σᵢ wᵢ." : "."),
        MergeMethod.TaskArithmetic => "θ = θ_base + λ Σᵢ wᵢ τᵢ" + (spec.EffectiveNormalize ? " / Σᵢ wᵢ" : "") + ", with τᵢ = θᵢ − θ_base.",
        MergeMethod.Ties => $"TIES (Yadav et al., 2023): each task vector τᵢ = θᵢ − θ_base keeps its ⌊densityᵢ · n⌋ entries of largest magnitude " +
                            $"({(spec.TrimScope == TrimScope.Model ? "n = every value of the model" : "n = the tensor's values")}); " +
                            (spec.EffectiveRescale == MergeRescale.L1Norm ? "each τ̂ᵢ is rescaled so that, per tensor, Σ|τ̂ᵢ| = Σ|τᵢ|; " : "") +
                            "the sign of Σᵢ wᵢ τ̂ᵢ is elected per entry (+ where it is 0); the entries wᵢ τ̂ᵢ that agree with it are " +
                            (spec.EffectiveNormalize ? "averaged (weighted by wᵢ)" : "summed (weighted by wᵢ)") + "; θ = θ_base + λ · that.",
        MergeMethod.DareLinear => "DARE (Yu et al., 2024): each entry of τᵢ is kept with probability densityᵢ" + RescaleText(spec) +
                                  "; θ = θ_base + λ Σᵢ wᵢ τ̃ᵢ" + (spec.EffectiveNormalize ? " / Σᵢ wᵢ." : "."),
        MergeMethod.DareTies => "DARE-TIES: each entry of τᵢ is kept with probability densityᵢ" + RescaleText(spec) +
                                "; then TIES's sign election and " + (spec.EffectiveNormalize ? "weighted mean" : "weighted sum") + " of the agreeing entries, scaled by λ.",
        _ => "",
    };
}
