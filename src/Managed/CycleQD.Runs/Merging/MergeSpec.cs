using CycleQD.Cpu.Merging;
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

    /// <summary>
    /// How sparsified task vectors are scaled back up; null takes the method's mergekit default
    /// (<see cref="MergeRescale.L1Norm"/> for DARE, none for ties). Only ties and the DARE methods take
    /// it, and <see cref="MergeRescale.InverseDensity"/> only the DARE methods.
    /// </summary>
    public MergeRescale? Rescale { get; init; }

    /// <summary>TIES: trim per tensor or over the whole model.</summary>
    public TrimScope TrimScope { get; init; } = TrimScope.Tensor;

    /// <summary>DARE: seed of the drop draws.</summary>
    public ulong Seed { get; init; }

    /// <summary>Output storage type of every tensor; null keeps each tensor's type in the base (or first) model.</summary>
    public DType? OutputDType { get; init; }

    /// <summary>The normalization in force.</summary>
    public bool EffectiveNormalize => Normalize ?? Info.DefaultNormalize;

    /// <summary>The rescale in force.</summary>
    public MergeRescale EffectiveRescale => Rescale ?? Info.DefaultRescale;

    /// <summary>The method's mergekit name.</summary>
    public string MethodName => Info.Name;

    /// <summary>The method's entry in <see cref="Methods"/>.</summary>
    public MergeMethodInfo Info => Methods[Method];

    /// <summary>mergekit names of the methods.</summary>
    public static IReadOnlyDictionary<MergeMethod, string> MethodNames { get; } = MergeMethodInfo.All.ToDictionary(m => m.Method, m => m.Name);

    /// <summary>Every method's name, defaults and the parameters it takes (one table, read by the YAML reader, the validation and the card).</summary>
    public static IReadOnlyDictionary<MergeMethod, MergeMethodInfo> Methods { get; } = MergeMethodInfo.All.ToDictionary(m => m.Method);
}

/// <summary>
/// One merge method: its mergekit name, its defaults and the parameters it takes. A parameter that
/// a method does not take is refused (naming the key) rather than silently ignored.
/// </summary>
/// <param name="Method">The method.</param>
/// <param name="Name">Its mergekit name.</param>
/// <param name="DefaultNormalize">normalize when the file does not say (mergekit's default for the method).</param>
/// <param name="DefaultRescale">rescale when the file does not say.</param>
/// <param name="Parameters">Keys it takes under the top-level <c>parameters:</c> (the model-level keys too serve as defaults there).</param>
/// <param name="ModelParameters">Keys it takes under a model's <c>parameters:</c>.</param>
/// <param name="Seeded">Whether it draws random numbers (and so takes <c>random_seed</c>).</param>
public sealed record MergeMethodInfo(MergeMethod Method, string Name, bool DefaultNormalize, MergeRescale DefaultRescale,
    IReadOnlyList<string> Parameters, IReadOnlyList<string> ModelParameters, bool Seeded)
{
    /// <summary>Every key any method takes under <c>parameters:</c>.</summary>
    public static IReadOnlyList<string> AllParameters { get; } = ["weight", "density", "normalize", "lambda", "rescale", "trim_scope", "int8_mask"];

    /// <summary>Every key any method takes under a model's <c>parameters:</c>.</summary>
    public static IReadOnlyList<string> AllModelParameters { get; } = ["weight", "density"];

    /// <summary>The methods, in the order the docs list them.</summary>
    public static IReadOnlyList<MergeMethodInfo> All { get; } =
    [
        new(MergeMethod.Linear, "linear", true, MergeRescale.None, ["weight", "normalize"], ["weight"], false),
        new(MergeMethod.TaskArithmetic, "task_arithmetic", false, MergeRescale.None, ["weight", "normalize", "lambda", "int8_mask"], ["weight"], false),
        new(MergeMethod.Ties, "ties", true, MergeRescale.None,
            ["weight", "density", "normalize", "lambda", "rescale", "trim_scope", "int8_mask"], ["weight", "density"], false),
        new(MergeMethod.DareLinear, "dare_linear", false, MergeRescale.L1Norm,
            ["weight", "density", "normalize", "lambda", "rescale", "int8_mask"], ["weight", "density"], true),
        new(MergeMethod.DareTies, "dare_ties", false, MergeRescale.L1Norm,
            ["weight", "density", "normalize", "lambda", "rescale", "int8_mask"], ["weight", "density"], true),
    ];

    /// <summary>Whether the method takes parameter <paramref name="key"/> under <c>parameters:</c>.</summary>
    public bool Takes(string key) => Parameters.Contains(key);

    /// <summary>The error text for a key the method does not take.</summary>
    public string DoesNotApply(string key) =>
        $"does not apply to {Name} (it takes: {string.Join(", ", Parameters)}{(Seeded ? "; and random_seed" : "")})";
}
