using CycleQD.Cpu.Merging;
using CycleQD.Tensors;

namespace CycleQD.Runs.Merging;

/// <summary>
/// Merges whole models with a <see cref="MergeSpec"/>, one tensor at a time, on the CPU in float32
/// (<see cref="TaskVectorMerges"/>). Opening checks that every model has the base's tensor names
/// and shapes (<see cref="ModelCompatibility"/>); tensors are processed in ordinal name order, and a
/// tensor's index in that order is its DARE stream. Peak memory is one tensor per input model plus
/// the output tensor. Owns the opened weight files until disposed.
/// </summary>
public sealed class ModelMerge : IDisposable
{
    private readonly SafetensorsModel? _base;
    private readonly SafetensorsModel[] _models;
    private readonly ModelScopeTrimResult? _modelTrim;

    /// <summary>The merge being made.</summary>
    public MergeSpec Spec { get; }

    /// <summary>The model whose tensor list, dtypes and config the output follows: the base, or the first model for linear without a base.</summary>
    public string ReferencePath { get; }

    /// <summary>Output tensors in ordinal name order (names and shapes of the reference model).</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    /// <summary>TIES over the whole model: each expert's trim (the smallest |τ| kept, and how many entries tied at it are kept); null otherwise.</summary>
    public IReadOnlyList<TrimCut>? ModelTrims => _modelTrim?.Model;

    private ModelMerge(MergeSpec spec, SafetensorsModel? baseModel, SafetensorsModel[] models, string referencePath)
    {
        Spec = spec;
        _base = baseModel;
        _models = models;
        ReferencePath = referencePath;
        var reference = baseModel ?? models[0];
        Tensors = reference.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
        if (spec.Method == MergeMethod.Ties && spec.TrimScope == TrimScope.Model) _modelTrim = ModelScopeCuts();
        else if (spec.Method == MergeMethod.Ties) EnsureEveryTensorKeepsAnEntry();
    }

    /// <summary>Validates the spec, opens every model and checks they can be merged.</summary>
    /// <exception cref="ArgumentException">a parameter out of range (the message names it and the model).</exception>
    /// <exception cref="TensorFormatException">a missing or corrupt model, or one whose tensors differ from the base's (naming the first differing tensor).</exception>
    public static ModelMerge Open(MergeSpec spec)
    {
        Validate(spec);
        SafetensorsModel? baseModel = null;
        var models = new List<SafetensorsModel>();
        try
        {
            if (spec.BaseModel != null) baseModel = SafetensorsModel.Open(spec.BaseModel);
            foreach (var m in spec.Models) models.Add(SafetensorsModel.Open(m.Path));
            var reference = baseModel ?? models[0];
            foreach (var t in reference.Tensors)
                if (!DTypes.IsWeightType(t.DType))
                    throw new TensorFormatException(reference.Source, t.Name, $"dtype {DTypes.Name(t.DType)} cannot be merged (F32, F16 or BF16 only)");
            foreach (var m in models)
                if (!ReferenceEquals(m, reference)) ModelCompatibility.EnsureCompatible(reference, m);
            // A NaN or infinity in any input spreads into the merged tensor; refuse before writing anything.
            baseModel?.ThrowIfNonFinite();
            foreach (var m in models) m.ThrowIfNonFinite();
            return new ModelMerge(spec, baseModel, models.ToArray(), spec.BaseModel ?? spec.Models[0].Path);
        }
        catch
        {
            baseModel?.Dispose();
            foreach (var m in models) m.Dispose();
            throw;
        }
    }

    private static void Validate(MergeSpec spec)
    {
        if (spec.Models.Count == 0) throw new ArgumentException($"{spec.MethodName}: no models to merge");
        if (spec.Method != MergeMethod.Linear && spec.BaseModel is null)
            throw new ArgumentException($"{spec.MethodName}: a base model is required");
        bool sparsifies = spec.Method is MergeMethod.Ties or MergeMethod.DareLinear or MergeMethod.DareTies;
        foreach (var m in spec.Models)
        {
            if (!float.IsFinite(m.Weight)) throw new ArgumentException($"{m.Path}: weight {m.Weight} is not a finite number");
            if (sparsifies ? !(m.Density > 0 && m.Density <= 1) : m.Density != 1)
                throw new ArgumentException(sparsifies ? $"{m.Path}: density {m.Density} must be in (0, 1]" : $"{m.Path}: density {spec.Info.DoesNotApply("density")}");
        }
        if (spec.Rescale is { } rescale)
        {
            if (!spec.Info.Takes("rescale")) throw new ArgumentException($"rescale {spec.Info.DoesNotApply("rescale")}");
            if (rescale == MergeRescale.InverseDensity && spec.Method == MergeMethod.Ties)
                throw new ArgumentException("rescale: inverse_density is DARE's rescale (dare_linear, dare_ties); ties takes true or false");
        }
        if (spec.TrimScope != TrimScope.Tensor && !spec.Info.Takes("trim_scope"))
            throw new ArgumentException($"trim_scope {spec.Info.DoesNotApply("trim_scope")}");
        if (!spec.Info.Takes("lambda") && spec.Lambda != 1f)
            throw new ArgumentException($"lambda {spec.Info.DoesNotApply("lambda")}");
        if (spec.Seed != 0 && !spec.Info.Seeded)
            throw new ArgumentException($"random_seed does not apply to {spec.MethodName} (only dare_linear and dare_ties draw random numbers)");
        if (spec.EffectiveNormalize && spec.Method is MergeMethod.Linear or MergeMethod.TaskArithmetic or MergeMethod.DareLinear
            && !(Math.Abs(spec.Models.Aggregate(0f, (s, m) => s + m.Weight)) >= TaskVectorMerges.NormalizeEpsilon))
            throw new ArgumentException($"{spec.MethodName}: the weights sum to (nearly) 0, so they cannot be normalized (set normalize: false)");
        if (!float.IsFinite(spec.Lambda)) throw new ArgumentException($"{spec.MethodName}: lambda {spec.Lambda} is not a finite number");
        if (spec.OutputDType is { } dt && !DTypes.IsWeightType(dt))
            throw new ArgumentException($"output dtype {DTypes.Name(dt)} is not F32, F16 or BF16");
    }

    /// <summary>
    /// TIES per tensor keeps ⌊density · n⌋ entries of each tensor; a tensor where that is 0 would lose
    /// its whole task vector (mergekit stops there too), so it is refused before anything is written.
    /// </summary>
    private void EnsureEveryTensorKeepsAnEntry()
    {
        foreach (var m in Spec.Models)
        {
            double d = TaskVectorMerges.DensityValue(m.Density);
            if (d >= 1) continue;
            foreach (var t in Tensors)
                if (t.ElementCount > 0 && MagnitudeThreshold.KeepCount(d, t.ElementCount) == 0)
                    throw new ArgumentException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                        $"{m.Path}: density {d} keeps no entry of tensor '{t.Name}' ({t.ElementCount} values; ⌊density · n⌋ = 0): raise the density to at least {1.0 / t.ElementCount:G4}, or use trim_scope: model"));
        }
    }

    /// <summary>The merged values of tensor <paramref name="index"/> (in <see cref="Tensors"/>' order), float32, row-major; a new array.</summary>
    public float[] MergeTensor(int index)
    {
        var info = Tensors[index];
        var experts = _models.Select(m => (ReadOnlyMemory<float>)m.ReadSingle(info.Name)).ToArray();
        float[] output = new float[info.ElementCount];
        var weights = Spec.Models.Select(m => m.Weight).ToArray();
        var densities = Spec.Models.Select(m => m.Density).ToArray();
        bool normalize = Spec.EffectiveNormalize;
        if (Spec.Method == MergeMethod.Linear)
        {
            TaskVectorMerges.Linear(experts, weights, normalize, output);
            ThrowIfOverflowed(info, output);
            return output;
        }
        float[] b = _base!.ReadSingle(info.Name);
        switch (Spec.Method)
        {
            case MergeMethod.TaskArithmetic:
                TaskVectorMerges.TaskArithmetic(b, experts, weights, Spec.Lambda, normalize, output);
                break;
            case MergeMethod.Ties when _modelTrim != null:
                var cuts = _modelTrim.PerTensor.Select(c => c[index]).ToArray();
                TaskVectorMerges.TiesTrimmed(b, experts, weights, cuts, Spec.Lambda, normalize, rescale: Spec.EffectiveRescale == MergeRescale.L1Norm, output);
                break;
            case MergeMethod.Ties:
                TaskVectorMerges.Ties(b, experts, weights, densities, Spec.Lambda, normalize, rescale: Spec.EffectiveRescale == MergeRescale.L1Norm, output);
                break;
            case MergeMethod.DareLinear or MergeMethod.DareTies:
                TaskVectorMerges.Dare(b, experts, weights, densities,
                    new DareOptions(Spec.Seed, (uint)index, 0, Spec.Lambda, Spec.EffectiveRescale, normalize, Spec.Method == MergeMethod.DareTies), output);
                break;
            default:
                throw new InvalidOperationException($"unhandled merge method {Spec.Method}");
        }
        ThrowIfOverflowed(info, output);
        return output;
    }

    /// <summary>Finite inputs can still overflow float32 under extreme weights or lambda; such a tensor is never written.</summary>
    /// <exception cref="ArgumentException">names the tensor and the counts (the CLI prefixes the merge file).</exception>
    private void ThrowIfOverflowed(TensorInfo info, float[] output)
    {
        var c = NonFiniteScan.Count(output);
        if (!c.IsFinite)
            throw new ArgumentException($"tensor '{info.Name}': the merge gives {c}: the weights or lambda overflow float32");
    }

    /// <summary>
    /// The output tensors for <see cref="SafetensorsWriter"/>: each is merged when the writer asks
    /// for its bytes, and stored as <see cref="MergeSpec.OutputDType"/> or the reference model's dtype.
    /// </summary>
    /// <param name="progress">Called after each tensor is merged: (tensors done, tensors in all, values done, values in all).</param>
    public IReadOnlyList<TensorData> OutputTensors(Action<int, int, long, long>? progress = null)
    {
        long total = Tensors.Sum(t => t.ElementCount);
        int done = 0;
        long values = 0;
        return Tensors.Select((t, i) =>
        {
            var dtype = Spec.OutputDType ?? t.DType;
            return new TensorData(t.Name, dtype, t.Shape, stream =>
            {
                TensorData.FromSingle(t.Name, dtype, t.Shape, MergeTensor(i)).WriteTo(stream);
                values += t.ElementCount;
                progress?.Invoke(++done, Tensors.Count, values, total);
            });
        }).ToArray();
    }

    private ModelScopeTrimResult ModelScopeCuts()
    {
        long total = Tensors.Sum(t => t.ElementCount);
        var keep = new long[Spec.Models.Count];
        for (int i = 0; i < keep.Length; i++)
        {
            var m = Spec.Models[i];
            double d = TaskVectorMerges.DensityValue(m.Density);
            keep[i] = d >= 1 ? total : MagnitudeThreshold.KeepCount(d, total);
            if (keep[i] == 0 && total > 0)
                throw new ArgumentException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"{m.Path}: density {d} keeps no entry of the whole model ({total} values; ⌊density · n⌋ = 0)"));
        }
        // The base tensor is read once per pass and tensor, an expert's once per pass it takes part in.
        int cachedIndex = -1;
        float[]? cachedBase = null;
        return ModelScopeTrim.Compute(Tensors.Count, keep,
            t =>
            {
                if (t != cachedIndex) { cachedBase = _base!.ReadSingle(Tensors[t].Name); cachedIndex = t; }
                return cachedBase;
            },
            (i, t) => _models[i].ReadSingle(Tensors[t].Name));
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _base?.Dispose();
        foreach (var m in _models) m.Dispose();
    }
}
