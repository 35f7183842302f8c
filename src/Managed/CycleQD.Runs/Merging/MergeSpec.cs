using CycleQD.Tensors;

namespace CycleQD.Runs.Merging;

/// <summary>A one-shot merge method, by its mergekit name.</summary>
public enum MergeMethod
{
    /// <summary><c>linear</c>: weighted average of the models (no base needed).</summary>
    Linear,

    /// <summary><c>task_arithmetic</c>: base + λ Σ wᵢ τᵢ.</summary>
    TaskArithmetic,

    /// <summary><c>ties</c>: trim each τᵢ to its largest entries, elect signs, disjoint mean.</summary>
    Ties,

    /// <summary><c>dare_linear</c>: random drop and rescale of each τᵢ, then task arithmetic.</summary>
    DareLinear,

    /// <summary><c>dare_ties</c>: random drop and rescale, then TIES's sign election and disjoint mean.</summary>
    DareTies,
}

/// <summary>Over which entries TIES picks each task vector's largest magnitudes.</summary>
public enum TrimScope
{
    /// <summary>Each tensor keeps its own top fraction (mergekit's behaviour).</summary>
    Tensor,

    /// <summary>The top fraction of the whole flattened task vector, all tensors together (the TIES paper's formulation).</summary>
    Model,
}

/// <summary>One input model of a merge.</summary>
/// <param name="Path">Hugging Face model folder (absolute).</param>
/// <param name="Weight">Its weight wᵢ.</param>
/// <param name="Density">Fraction of its task vector kept (TIES: largest magnitudes; DARE: keep probability).</param>
public sealed record MergeModel(string Path, float Weight = 1f, float Density = 1f);

/// <summary>
/// A one-shot merge: method, base and input models, and the method's parameters, as a mergekit
/// YAML describes them (see <see cref="MergeConfig"/>).
/// </summary>
/// <param name="Method">The merge method.</param>
/// <param name="BaseModel">The base model folder (absolute); required by every method except linear.</param>
/// <param name="Models">The models to merge (the experts), in order; DARE's draws depend on the position.</param>
public sealed record MergeSpec(MergeMethod Method, string? BaseModel, IReadOnlyList<MergeModel> Models)
{
    /// <summary>Scale λ of the merged task vector (ignored by linear).</summary>
    public float Lambda { get; init; } = 1f;

    /// <summary>Normalization by the weights; null takes the method's mergekit default (true for linear and ties, false otherwise).</summary>
    public bool? Normalize { get; init; }

    /// <summary>DARE: multiply kept entries by 1/density.</summary>
    public bool Rescale { get; init; } = true;

    /// <summary>TIES: trim per tensor or over the whole model.</summary>
    public TrimScope TrimScope { get; init; } = TrimScope.Tensor;

    /// <summary>DARE: seed of the drop draws.</summary>
    public ulong Seed { get; init; }

    /// <summary>Output storage type of every tensor; null keeps each tensor's type in the base (or first) model.</summary>
    public DType? OutputDType { get; init; }

    /// <summary>The normalization in force.</summary>
    public bool EffectiveNormalize => Normalize ?? Method is MergeMethod.Linear or MergeMethod.Ties;

    /// <summary>The method's mergekit name.</summary>
    public string MethodName => MethodNames[Method];

    /// <summary>mergekit names of the methods.</summary>
    public static readonly IReadOnlyDictionary<MergeMethod, string> MethodNames = new Dictionary<MergeMethod, string>
    {
        [MergeMethod.Linear] = "linear",
        [MergeMethod.TaskArithmetic] = "task_arithmetic",
        [MergeMethod.Ties] = "ties",
        [MergeMethod.DareLinear] = "dare_linear",
        [MergeMethod.DareTies] = "dare_ties",
    };
}
