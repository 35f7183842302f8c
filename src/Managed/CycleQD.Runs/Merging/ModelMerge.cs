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
    private readonly float[]? _thresholds;

    /// <summary>The merge being made.</summary>
    public MergeSpec Spec { get; }

    /// <summary>The model whose tensor list, dtypes and config the output follows: the base, or the first model for linear without a base.</summary>
    public string ReferencePath { get; }

    /// <summary>Output tensors in ordinal name order (names and shapes of the reference model).</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    /// <summary>TIES over the whole model: each expert's trim threshold (the smallest |τ| kept); null otherwise.</summary>
    public IReadOnlyList<float>? ModelThresholds => _thresholds;

    private ModelMerge(MergeSpec spec, SafetensorsModel? baseModel, SafetensorsModel[] models, string referencePath)
    {
        Spec = spec;
        _base = baseModel;
        _models = models;
        ReferencePath = referencePath;
        var reference = baseModel ?? models[0];
        Tensors = reference.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
        if (spec.Method == MergeMethod.Ties && spec.TrimScope == TrimScope.Model) _thresholds = ModelScopeThresholds();
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
        bool dare = spec.Method is MergeMethod.DareLinear or MergeMethod.DareTies;
        foreach (var m in spec.Models)
        {
            if (!float.IsFinite(m.Weight)) throw new ArgumentException($"{m.Path}: weight {m.Weight} is not a finite number");
            if (dare ? !(m.Density > 0 && m.Density <= 1) : !(m.Density >= 0 && m.Density <= 1))
                throw new ArgumentException($"{m.Path}: density {m.Density} must be in {(dare ? "(0, 1]" : "[0, 1]")}");
        }
        if (spec.EffectiveNormalize && spec.Method is MergeMethod.Linear or MergeMethod.TaskArithmetic or MergeMethod.DareLinear
            && spec.Models.Sum(m => (double)m.Weight) == 0)
            throw new ArgumentException($"{spec.MethodName}: the weights sum to 0, so they cannot be normalized (set normalize: false)");
        if (!float.IsFinite(spec.Lambda)) throw new ArgumentException($"{spec.MethodName}: lambda {spec.Lambda} is not a finite number");
        if (spec.OutputDType is { } dt && !DTypes.IsWeightType(dt))
            throw new ArgumentException($"output dtype {DTypes.Name(dt)} is not F32, F16 or BF16");
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
            case MergeMethod.Ties when _thresholds != null:
                TaskVectorMerges.TiesTrimmed(b, experts, weights, _thresholds, Spec.Lambda, normalize, output);
                break;
            case MergeMethod.Ties:
                TaskVectorMerges.Ties(b, experts, weights, densities, Spec.Lambda, normalize, output);
                break;
            case MergeMethod.DareLinear or MergeMethod.DareTies:
                TaskVectorMerges.Dare(b, experts, weights, densities,
                    new DareOptions(Spec.Seed, (uint)index, 0, Spec.Lambda, Spec.Rescale, normalize, Spec.Method == MergeMethod.DareTies), output);
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

    private float[] ModelScopeThresholds()
    {
        long total = Tensors.Sum(t => t.ElementCount);
        var selectors = Spec.Models.Select(m => new MagnitudeThreshold(MagnitudeThreshold.KeepCount(TaskVectorMerges.DensityValue(m.Density), total))).ToArray();
        for (int pass = 0; pass < 2; pass++)
        {
            var active = Enumerable.Range(0, selectors.Length).Where(i => pass == 0 || selectors[i].NeedsFinePass).ToArray();
            if (active.Length == 0) break;
            foreach (var t in Tensors)
            {
                float[] b = _base!.ReadSingle(t.Name);
                foreach (int i in active)
                {
                    float[] e = _models[i].ReadSingle(t.Name);
                    if (pass == 0) selectors[i].CountCoarse(b, e);
                    else selectors[i].CountFine(b, e);
                }
            }
        }
        return selectors.Select(s => s.Threshold).ToArray();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _base?.Dispose();
        foreach (var m in _models) m.Dispose();
    }
}
