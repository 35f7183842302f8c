using CycleQD.Core.Random;

namespace CycleQD.Cpu.Merging;

/// <summary>
/// One-shot merges of one tensor at a time, in float32: linear averaging, task arithmetic, TIES
/// (Yadav et al., NeurIPS 2023) and DARE (Yu et al., ICML 2024), with the parameters mergekit
/// gives them. A task vector is τᵢ = θᵢ − θ_base, element by element.
/// <para>Every method reads its inputs as spans of the same length n (the tensor's elements,
/// row-major) and writes n values into <c>output</c>, which may not alias an input. Expert
/// tensors are passed as <see cref="ReadOnlyMemory{T}"/> because a span cannot be an array
/// element; nothing is kept after the call returns.</para>
/// </summary>
public static class TaskVectorMerges
{
    /// <summary>Philox purpose of DARE's drop draws (purposes 0–2 of a tensor stream belong to the search's mutations).</summary>
    public const uint DarePurpose = 3;

    /// <summary>
    /// Weighted average: out = Σᵢ wᵢ θᵢ, divided by Σᵢ wᵢ when <paramref name="normalize"/> is set
    /// (mergekit's <c>linear</c>; normalize defaults to true there).
    /// </summary>
    /// <param name="models">The models' values for this tensor (at least one), each of output's length.</param>
    /// <param name="weights">One weight per model.</param>
    /// <param name="normalize">Divide by the sum of the weights.</param>
    /// <param name="output">Receives the merged tensor.</param>
    /// <exception cref="ArgumentException">no model, lengths disagree, or normalize with weights summing to 0.</exception>
    public static void Linear(ReadOnlyMemory<float>[] models, ReadOnlySpan<float> weights, bool normalize, Span<float> output)
    {
        if (models.Length == 0) throw new ArgumentException("at least one model is needed", nameof(models));
        CheckLengths(output.Length, models, weights.Length);
        float scale = 1f;
        if (normalize)
        {
            float sum = 0;
            foreach (float w in weights) sum += w;
            if (sum == 0) throw new ArgumentException("the weights sum to 0; they cannot be normalized", nameof(weights));
            scale = 1f / sum;
        }
        var m0 = models[0].Span;
        float w0 = weights[0] * scale;
        for (int j = 0; j < output.Length; j++) output[j] = w0 * m0[j];
        for (int i = 1; i < models.Length; i++)
        {
            var m = models[i].Span;
            float w = weights[i] * scale;
            for (int j = 0; j < output.Length; j++) output[j] += w * m[j];
        }
    }

    /// <summary>
    /// Task arithmetic (Ilharco et al., ICLR 2023): out = θ_base + λ Σᵢ wᵢ τᵢ, with Σᵢ wᵢ τᵢ divided by
    /// Σᵢ wᵢ when <paramref name="normalize"/> is set (mergekit's <c>task_arithmetic</c>; normalize defaults to false).
    /// </summary>
    /// <param name="baseWeights">The base model's values θ_base.</param>
    /// <param name="experts">The experts' values θᵢ, each of the base's length.</param>
    /// <param name="weights">One weight wᵢ per expert.</param>
    /// <param name="lambda">Scale λ of the merged task vector.</param>
    /// <param name="normalize">Divide the weighted sum by Σᵢ wᵢ.</param>
    /// <param name="output">Receives the merged tensor.</param>
    /// <exception cref="ArgumentException">lengths disagree, or normalize with weights summing to 0.</exception>
    public static void TaskArithmetic(ReadOnlySpan<float> baseWeights, ReadOnlyMemory<float>[] experts, ReadOnlySpan<float> weights,
        float lambda, bool normalize, Span<float> output)
    {
        CheckLengths(baseWeights.Length, experts, weights.Length);
        CheckOutput(baseWeights.Length, output.Length);
        float scale = lambda;
        if (normalize)
        {
            float sum = 0;
            foreach (float w in weights) sum += w;
            if (sum == 0) throw new ArgumentException("the weights sum to 0; they cannot be normalized", nameof(weights));
            scale = lambda / sum;
        }
        output.Clear();
        for (int i = 0; i < experts.Length; i++)
        {
            var e = experts[i].Span;
            float w = weights[i];
            for (int j = 0; j < output.Length; j++) output[j] += w * (e[j] - baseWeights[j]);
        }
        for (int j = 0; j < output.Length; j++) output[j] = baseWeights[j] + scale * output[j];
    }

    /// <summary>
    /// TIES with trimming per tensor (mergekit's <c>ties</c>): each τᵢ keeps its ⌊densityᵢ · n⌋ entries of
    /// largest magnitude (<see cref="TrimThreshold"/>), then <see cref="TiesTrimmed"/> elects signs and
    /// takes the disjoint mean.
    /// </summary>
    /// <param name="baseWeights">The base model's values.</param>
    /// <param name="experts">The experts' values, each of the base's length.</param>
    /// <param name="weights">One weight per expert (1 for the paper's plain TIES).</param>
    /// <param name="densities">Fraction of each task vector's entries kept, in [0, 1].</param>
    /// <param name="lambda">Scale λ of the merged task vector.</param>
    /// <param name="normalize">Divide by the weights of the agreeing entries (the disjoint mean; mergekit's default for ties).</param>
    /// <param name="output">Receives the merged tensor.</param>
    public static void Ties(ReadOnlySpan<float> baseWeights, ReadOnlyMemory<float>[] experts, ReadOnlySpan<float> weights,
        ReadOnlySpan<float> densities, float lambda, bool normalize, Span<float> output)
    {
        CheckLengths(baseWeights.Length, experts, weights.Length);
        if (densities.Length != experts.Length) throw new ArgumentException($"{densities.Length} densities for {experts.Length} experts", nameof(densities));
        Span<float> thresholds = experts.Length <= 64 ? stackalloc float[experts.Length] : new float[experts.Length];
        for (int i = 0; i < experts.Length; i++) thresholds[i] = TrimThreshold(baseWeights, experts[i].Span, densities[i]);
        TiesTrimmed(baseWeights, experts, weights, thresholds, lambda, normalize, output);
    }

    /// <summary>
    /// TIES given each task vector's trim threshold (so the trim can span a whole model, see
    /// <see cref="MagnitudeThreshold"/>): τ̂ᵢ = τᵢ where |τᵢ| ≥ tᵢ, else 0; elected sign
    /// s = sign(Σᵢ wᵢ τ̂ᵢ); merged = Σᵢ wᵢ τ̂ᵢ over the entries with τ̂ᵢ ≠ 0 and sign(τ̂ᵢ) = s, divided by the
    /// sum of those entries' wᵢ when <paramref name="normalize"/> is set (0 where no entry agrees);
    /// out = θ_base + λ · merged.
    /// </summary>
    /// <param name="baseWeights">The base model's values.</param>
    /// <param name="experts">The experts' values, each of the base's length.</param>
    /// <param name="weights">One weight per expert.</param>
    /// <param name="thresholds">Per expert, the smallest |τ| kept; NaN keeps nothing, 0 keeps everything.</param>
    /// <param name="lambda">Scale λ of the merged task vector.</param>
    /// <param name="normalize">Divide by the weights of the agreeing entries.</param>
    /// <param name="output">Receives the merged tensor.</param>
    public static void TiesTrimmed(ReadOnlySpan<float> baseWeights, ReadOnlyMemory<float>[] experts, ReadOnlySpan<float> weights,
        ReadOnlySpan<float> thresholds, float lambda, bool normalize, Span<float> output)
    {
        CheckLengths(baseWeights.Length, experts, weights.Length);
        CheckOutput(baseWeights.Length, output.Length);
        if (thresholds.Length != experts.Length) throw new ArgumentException($"{thresholds.Length} thresholds for {experts.Length} experts", nameof(thresholds));
        int k = experts.Length;
        Span<float> tau = k <= 64 ? stackalloc float[k] : new float[k];
        var spans = new ReadOnlyMemory<float>[k];
        experts.CopyTo(spans, 0);
        for (int j = 0; j < output.Length; j++)
        {
            float b = baseWeights[j];
            float sum = 0;
            for (int i = 0; i < k; i++)
            {
                float t = spans[i].Span[j] - b;
                t = MathF.Abs(t) >= thresholds[i] ? t : 0f;
                tau[i] = t;
                sum += weights[i] * t;
            }
            output[j] = b + lambda * DisjointMean(tau, weights, sum, normalize);
        }
    }

    /// <summary>
    /// DARE (drop and rescale): each entry of τᵢ is kept with probability densityᵢ and, when
    /// <see cref="DareOptions.Rescale"/> is set, multiplied by 1/densityᵢ. Then either task arithmetic
    /// (mergekit's <c>dare_linear</c>) or, with <see cref="DareOptions.SignConsensus"/>, TIES's sign
    /// election and disjoint mean (<c>dare_ties</c>) combine them, scaled by λ.
    /// The draw for element j of expert i is <see cref="DareKeeps"/>(seed, tensor index, i, first + j, densityᵢ),
    /// so a merge is reproducible and independent of how a tensor is split into chunks.
    /// </summary>
    /// <param name="baseWeights">The base model's values (elements first … first + n − 1 of the tensor).</param>
    /// <param name="experts">The experts' values, each of the base's length.</param>
    /// <param name="weights">One weight per expert.</param>
    /// <param name="densities">Keep probability per expert, in (0, 1].</param>
    /// <param name="options">Seed, tensor index, first element, λ and the switches.</param>
    /// <param name="output">Receives the merged values.</param>
    public static void Dare(ReadOnlySpan<float> baseWeights, ReadOnlyMemory<float>[] experts, ReadOnlySpan<float> weights,
        ReadOnlySpan<float> densities, DareOptions options, Span<float> output)
    {
        CheckLengths(baseWeights.Length, experts, weights.Length);
        CheckOutput(baseWeights.Length, output.Length);
        if (densities.Length != experts.Length) throw new ArgumentException($"{densities.Length} densities for {experts.Length} experts", nameof(densities));
        foreach (float d in densities)
            if (!(d > 0 && d <= 1)) throw new ArgumentOutOfRangeException(nameof(densities), d, "a DARE density must be in (0, 1]");
        int k = experts.Length;
        float linearScale = options.Lambda;
        if (options.Normalize && !options.SignConsensus)
        {
            float sum = 0;
            foreach (float w in weights) sum += w;
            if (sum == 0) throw new ArgumentException("the weights sum to 0; they cannot be normalized", nameof(weights));
            linearScale = options.Lambda / sum;
        }
        Span<float> tau = k <= 64 ? stackalloc float[k] : new float[k];
        Span<float> gain = k <= 64 ? stackalloc float[k] : new float[k];
        for (int i = 0; i < k; i++) gain[i] = options.Rescale ? 1f / densities[i] : 1f;
        // Each expert's 4-word Philox block serves four consecutive elements.
        var blocks = new (uint X0, uint X1, uint X2, uint X3)[k];
        var blockIndex = new long[k];
        Array.Fill(blockIndex, -1);
        for (int j = 0; j < output.Length; j++)
        {
            long element = options.FirstElement + j;
            long block = element >> 2;
            float b = baseWeights[j];
            float sum = 0;
            for (int i = 0; i < k; i++)
            {
                if (blockIndex[i] != block)
                {
                    blocks[i] = Philox4x32.Block(options.Seed, options.TensorIndex, (uint)i, ((ulong)DarePurpose << 32) + (ulong)block);
                    blockIndex[i] = block;
                }
                uint word = (element & 3) switch { 0 => blocks[i].X0, 1 => blocks[i].X1, 2 => blocks[i].X2, _ => blocks[i].X3 };
                float t = Philox4x32.ToUniform(word) < densities[i] ? (experts[i].Span[j] - b) * gain[i] : 0f;
                tau[i] = t;
                sum += weights[i] * t;
            }
            output[j] = options.SignConsensus
                ? b + options.Lambda * DisjointMean(tau, weights, sum, options.Normalize)
                : b + linearScale * sum;
        }
    }

    /// <summary>
    /// Whether DARE keeps element <paramref name="element"/> of expert <paramref name="expert"/>'s task
    /// vector in tensor <paramref name="tensorIndex"/>: Philox4x32.Uniform(seed, stream = tensor index,
    /// generation = expert index, purpose = <see cref="DarePurpose"/>, element) &lt; density.
    /// </summary>
    public static bool DareKeeps(ulong seed, uint tensorIndex, int expert, long element, float density) =>
        Philox4x32.Uniform(seed, tensorIndex, (uint)expert, DarePurpose, (ulong)element) < density;

    /// <summary>
    /// The trim threshold of one task vector τ = expert − base for one tensor: the k-th largest |τ|
    /// with k = ⌊density · n⌋ (NaN entries ignored). Entries with |τ| ≥ the threshold are kept, so
    /// exact ties at the threshold are all kept. Returns NaN when k = 0 (nothing kept) and 0 when
    /// k ≥ n (everything kept).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">density outside [0, 1].</exception>
    public static float TrimThreshold(ReadOnlySpan<float> baseWeights, ReadOnlySpan<float> expert, double density)
    {
        if (expert.Length != baseWeights.Length) throw new ArgumentException($"expert has {expert.Length} elements, base {baseWeights.Length}", nameof(expert));
        var select = new MagnitudeThreshold(MagnitudeThreshold.KeepCount(density, baseWeights.Length));
        select.CountCoarse(baseWeights, expert);
        if (select.NeedsFinePass) select.CountFine(baseWeights, expert);
        return select.Threshold;
    }

    private static float DisjointMean(ReadOnlySpan<float> tau, ReadOnlySpan<float> weights, float sum, bool normalize)
    {
        if (sum == 0 || float.IsNaN(sum)) return 0f;
        bool positive = sum > 0;
        float acc = 0, wsum = 0;
        for (int i = 0; i < tau.Length; i++)
        {
            float t = tau[i];
            if (positive ? t > 0 : t < 0)
            {
                acc += weights[i] * t;
                wsum += weights[i];
            }
        }
        if (!normalize) return acc;
        return wsum == 0 ? 0f : acc / wsum;
    }

    private static void CheckLengths(int n, ReadOnlyMemory<float>[] models, int weightCount)
    {
        ArgumentNullException.ThrowIfNull(models);
        if (weightCount != models.Length) throw new ArgumentException($"{weightCount} weights for {models.Length} models", "weights");
        for (int i = 0; i < models.Length; i++)
            if (models[i].Length != n) throw new ArgumentException($"model {i} has {models[i].Length} elements, expected {n}", nameof(models));
    }

    private static void CheckOutput(int n, int outputLength)
    {
        if (outputLength != n) throw new ArgumentException($"output has {outputLength} elements, the inputs {n}", "output");
    }
}

/// <summary>Settings of <see cref="TaskVectorMerges.Dare"/>.</summary>
/// <param name="Seed">64-bit seed of the drop draws (the Philox key).</param>
/// <param name="TensorIndex">The tensor's index in the base model's tensor list (the Philox stream).</param>
/// <param name="FirstElement">Index, inside the tensor, of the first element passed (0 for a whole tensor).</param>
/// <param name="Lambda">Scale λ of the merged task vector.</param>
/// <param name="Rescale">Multiply kept entries by 1/density (DARE's rescale; mergekit's default).</param>
/// <param name="Normalize">dare_linear: divide by Σ wᵢ; dare_ties: divide by the agreeing entries' weights.</param>
/// <param name="SignConsensus">Combine with TIES's sign election and disjoint mean (dare_ties).</param>
public readonly record struct DareOptions(ulong Seed, uint TensorIndex, long FirstElement = 0, float Lambda = 1f,
    bool Rescale = true, bool Normalize = false, bool SignConsensus = false);
