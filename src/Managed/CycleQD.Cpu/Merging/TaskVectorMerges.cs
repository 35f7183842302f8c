using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
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
    /// Below this |Σ wᵢ| the weights cannot be normalized (mergekit then silently skips the division;
    /// here it is an error, since dividing by a near-zero sum is never what was meant).
    /// </summary>
    public const float NormalizeEpsilon = 1e-8f;

    /// <summary>Below this Σ|τ| (before or after sparsifying) the L1 rescale leaves a task vector unscaled, as mergekit does.</summary>
    public const double RescaleEpsilon = 1e-7;

    /// <summary>
    /// Weighted average: out = (Σᵢ wᵢ θᵢ) / Σᵢ wᵢ, without the division unless <paramref name="normalize"/>
    /// is set (mergekit's <c>linear</c>; normalize defaults to true there). The sum is accumulated in
    /// model order and divided once, the order mergekit computes it in.
    /// </summary>
    /// <param name="models">The models' values for this tensor (at least one), each of output's length.</param>
    /// <param name="weights">One weight per model.</param>
    /// <param name="normalize">Divide by the sum of the weights.</param>
    /// <param name="output">Receives the merged tensor.</param>
    /// <exception cref="ArgumentException">no model, lengths disagree, or normalize with |Σ wᵢ| &lt; <see cref="NormalizeEpsilon"/>.</exception>
    public static void Linear(ReadOnlyMemory<float>[] models, ReadOnlySpan<float> weights, bool normalize, Span<float> output)
    {
        if (models.Length == 0) throw new ArgumentException("at least one model is needed", nameof(models));
        CheckLengths(output.Length, models, weights.Length);
        float divisor = normalize ? Divisor(weights) : 1f;
        TensorPrimitives.Multiply(models[0].Span, weights[0], output);
        for (int i = 1; i < models.Length; i++)
            TensorPrimitives.MultiplyAdd(models[i].Span, weights[i], output, output);
        if (normalize) TensorPrimitives.Divide(output, divisor, output);
    }

    /// <summary>
    /// Task arithmetic (Ilharco et al., ICLR 2023): out = θ_base + λ · (Σᵢ wᵢ τᵢ) / Σᵢ wᵢ, without the
    /// division unless <paramref name="normalize"/> is set (mergekit's <c>task_arithmetic</c>; normalize
    /// defaults to false). Sum in expert order, then the division, then λ, then the base is added.
    /// </summary>
    /// <param name="baseWeights">The base model's values θ_base.</param>
    /// <param name="experts">The experts' values θᵢ, each of the base's length.</param>
    /// <param name="weights">One weight wᵢ per expert.</param>
    /// <param name="lambda">Scale λ of the merged task vector.</param>
    /// <param name="normalize">Divide the weighted sum by Σᵢ wᵢ.</param>
    /// <param name="output">Receives the merged tensor.</param>
    /// <exception cref="ArgumentException">lengths disagree, or normalize with |Σ wᵢ| &lt; <see cref="NormalizeEpsilon"/>.</exception>
    public static void TaskArithmetic(ReadOnlySpan<float> baseWeights, ReadOnlyMemory<float>[] experts, ReadOnlySpan<float> weights,
        float lambda, bool normalize, Span<float> output)
    {
        CheckLengths(baseWeights.Length, experts, weights.Length);
        CheckOutput(baseWeights.Length, output.Length);
        float divisor = normalize ? Divisor(weights) : 1f;
        var plan = new ChunkPlan(Sparsify.None, weights.ToArray(), null, null, null, default, Combine.Linear, normalize, divisor, lambda);
        Run(baseWeights, experts, output, plan);
    }

    /// <summary>
    /// TIES with trimming per tensor (mergekit's <c>ties</c>): each τᵢ keeps exactly its k = ⌊densityᵢ · n⌋
    /// entries of largest magnitude (<see cref="MagnitudeTrim"/>; of entries tied at the k-th magnitude,
    /// the lowest indices), a density of 1 keeps all; then <see cref="TiesTrimmed"/> rescales (optionally),
    /// elects signs and takes the disjoint mean.
    /// </summary>
    /// <param name="baseWeights">The base model's values.</param>
    /// <param name="experts">The experts' values, each of the base's length.</param>
    /// <param name="weights">One weight per expert (1 for the paper's plain TIES).</param>
    /// <param name="densities">Fraction of each task vector's entries kept, in (0, 1].</param>
    /// <param name="lambda">Scale λ of the merged task vector.</param>
    /// <param name="normalize">Divide by the weights of the agreeing entries (the disjoint mean; mergekit's default for ties).</param>
    /// <param name="rescale">Restore each trimmed τᵢ's Σ|τ| over the tensor (<see cref="MergeRescale.L1Norm"/>; mergekit's <c>rescale: true</c>).</param>
    /// <param name="output">Receives the merged tensor.</param>
    /// <exception cref="ArgumentException">lengths disagree, or a density keeps no entry (⌊densityᵢ · n⌋ = 0 with n &gt; 0; the message names the expert).</exception>
    /// <exception cref="ArgumentOutOfRangeException">a density outside [0, 1].</exception>
    public static void Ties(ReadOnlySpan<float> baseWeights, ReadOnlyMemory<float>[] experts, ReadOnlySpan<float> weights,
        ReadOnlySpan<float> densities, float lambda, bool normalize, bool rescale, Span<float> output)
    {
        CheckLengths(baseWeights.Length, experts, weights.Length);
        if (densities.Length != experts.Length) throw new ArgumentException($"{densities.Length} densities for {experts.Length} experts", nameof(densities));
        var cuts = new TrimCut[experts.Length];
        int n = baseWeights.Length;
        for (int i = 0; i < experts.Length; i++)
        {
            double d = DensityValue(densities[i]);
            if (n > 0 && d < 1 && MagnitudeThreshold.KeepCount(d, n) == 0)
                throw new ArgumentException($"expert {i}: density {d.ToString(System.Globalization.CultureInfo.InvariantCulture)} keeps no entry of {n} (⌊density · n⌋ = 0)", nameof(densities));
            cuts[i] = MagnitudeTrim(baseWeights, experts[i].Span, d);
        }
        TiesTrimmed(baseWeights, experts, weights, cuts, lambda, normalize, rescale, output);
    }

    /// <summary>
    /// TIES given each task vector's trim of this tensor (so the trim can span a whole model, see
    /// <see cref="ModelScopeTrim"/>): τ̂ᵢ = the entries of τᵢ that <see cref="TrimCut"/> i keeps, else 0;
    /// with <paramref name="rescale"/>, τ̂ᵢ × Σ|τᵢ| / Σ|τ̂ᵢ| over the tensor (see <see cref="MergeRescale.L1Norm"/>).
    /// Per entry, with dᵢ = wᵢ τ̂ᵢ: the elected sign is + when Σᵢ dᵢ ≥ 0 (an exact 0 elects +), else −;
    /// the agreeing entries are the dᵢ of the elected sign (dᵢ = 0 never agrees, and a negative wᵢ
    /// flips its entry's sign); merged = Σ agreeing dᵢ, divided by the sum of their wᵢ when
    /// <paramref name="normalize"/> is set (by 1 where that sum is 0); out = θ_base + λ · merged.
    /// This is mergekit's <c>ties</c> consensus, step for step.
    /// </summary>
    /// <param name="baseWeights">The base model's values.</param>
    /// <param name="experts">The experts' values, each of the base's length.</param>
    /// <param name="weights">One weight per expert.</param>
    /// <param name="cuts">Per expert, which entries of its task vector (in this tensor) are kept.</param>
    /// <param name="lambda">Scale λ of the merged task vector.</param>
    /// <param name="normalize">Divide by the weights of the agreeing entries.</param>
    /// <param name="rescale">Restore each τ̂ᵢ's L1 norm over the values passed.</param>
    /// <param name="output">Receives the merged tensor.</param>
    public static void TiesTrimmed(ReadOnlySpan<float> baseWeights, ReadOnlyMemory<float>[] experts, ReadOnlySpan<float> weights,
        ReadOnlySpan<TrimCut> cuts, float lambda, bool normalize, bool rescale, Span<float> output)
    {
        CheckLengths(baseWeights.Length, experts, weights.Length);
        CheckOutput(baseWeights.Length, output.Length);
        if (cuts.Length != experts.Length) throw new ArgumentException($"{cuts.Length} trims for {experts.Length} experts", nameof(cuts));
        var thresholds = new float[experts.Length];
        var lastTie = new long[experts.Length];
        for (int i = 0; i < experts.Length; i++)
        {
            thresholds[i] = cuts[i].Threshold;
            lastTie[i] = LastTieIndex(baseWeights, experts[i].Span, cuts[i]);
        }
        var plan = new ChunkPlan(Sparsify.Trim, weights.ToArray(), thresholds, lastTie, null, default, Combine.Disjoint, normalize, 1f, lambda);
        if (rescale) plan = plan with { Gains = L1Gains(baseWeights, experts, plan) };
        Run(baseWeights, experts, output, plan);
    }

    /// <summary>
    /// DARE (drop and rescale): each entry of τᵢ is kept with probability densityᵢ, and the kept ones
    /// are rescaled as <see cref="DareOptions.Rescale"/> says (by default <see cref="MergeRescale.L1Norm"/>,
    /// mergekit's: Σ|τ| of each task vector over the tensor is preserved). Then either task arithmetic
    /// (mergekit's <c>dare_linear</c>, in <see cref="TaskArithmetic"/>'s order) or, with
    /// <see cref="DareOptions.SignConsensus"/>, <see cref="TiesTrimmed"/>'s sign election and disjoint mean
    /// (<c>dare_ties</c>) combine them, scaled by λ.
    /// The draw for element j of expert i is <see cref="DareKeeps"/>(seed, tensor index, i, first + j, densityᵢ),
    /// so the kept entries do not depend on how a tensor is split into chunks; the L1 gains do (they
    /// are sums over the values passed), so a tensor merged in parts takes them from
    /// <see cref="DareGains"/> over the whole tensor, through <see cref="DareOptions.Gains"/>.
    /// </summary>
    /// <param name="baseWeights">The base model's values (elements first … first + n − 1 of the tensor).</param>
    /// <param name="experts">The experts' values, each of the base's length.</param>
    /// <param name="weights">One weight per expert.</param>
    /// <param name="densities">Keep probability per expert, in (0, 1].</param>
    /// <param name="options">Seed, tensor index, first element, λ, rescale and the switches.</param>
    /// <param name="output">Receives the merged values.</param>
    /// <exception cref="ArgumentException">lengths disagree, or dare_linear normalize with |Σ wᵢ| &lt; <see cref="NormalizeEpsilon"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">a density outside (0, 1].</exception>
    public static void Dare(ReadOnlySpan<float> baseWeights, ReadOnlyMemory<float>[] experts, ReadOnlySpan<float> weights,
        ReadOnlySpan<float> densities, DareOptions options, Span<float> output)
    {
        CheckLengths(baseWeights.Length, experts, weights.Length);
        CheckOutput(baseWeights.Length, output.Length);
        CheckDareDensities(densities, experts.Length);
        bool linear = !options.SignConsensus;
        float divisor = linear && options.Normalize ? Divisor(weights) : 1f;
        var gains = options.Gains ?? DareGains(baseWeights, experts, densities, options);
        if (gains.Length != experts.Length) throw new ArgumentException($"{gains.Length} gains for {experts.Length} experts", nameof(options));
        var plan = new ChunkPlan(Sparsify.Dare, weights.ToArray(), null, null, densities.ToArray(), options,
            linear ? Combine.Linear : Combine.Disjoint, options.Normalize, divisor, options.Lambda) { Gains = gains };
        Run(baseWeights, experts, output, plan);
    }

    /// <summary>
    /// The factor each expert's kept DARE entries are multiplied by, for the values passed: 1 for
    /// <see cref="MergeRescale.None"/>, 1/densityᵢ for <see cref="MergeRescale.InverseDensity"/>, and for
    /// <see cref="MergeRescale.L1Norm"/> Σ|τᵢ| / Σ over the kept entries of |τᵢ| (sums in float64, in
    /// element order; 1 when either is below <see cref="RescaleEpsilon"/>).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">a density outside (0, 1].</exception>
    public static float[] DareGains(ReadOnlySpan<float> baseWeights, ReadOnlyMemory<float>[] experts, ReadOnlySpan<float> densities, DareOptions options)
    {
        CheckLengths(baseWeights.Length, experts, experts.Length);
        CheckDareDensities(densities, experts.Length);
        var gains = new float[experts.Length];
        switch (options.Rescale)
        {
            case MergeRescale.None:
                Array.Fill(gains, 1f);
                return gains;
            case MergeRescale.InverseDensity:
                for (int i = 0; i < gains.Length; i++) gains[i] = 1f / densities[i];
                return gains;
            case MergeRescale.L1Norm:
                var plan = new ChunkPlan(Sparsify.Dare, new float[experts.Length], null, null, densities.ToArray(), options, Combine.Linear, false, 1f, 1f);
                return L1Gains(baseWeights, experts, plan);
            default:
                throw new ArgumentOutOfRangeException(nameof(options), options.Rescale, "unknown rescale");
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
    /// The magnitude trim of one task vector τ = expert − base for one tensor: exactly its
    /// k = ⌊density · n⌋ entries of largest |τ| (NaN entries ignored), the lowest indices winning among
    /// entries tied at the k-th magnitude. <see cref="TrimCut.KeepAll"/> when density ≥ 1 or k ≥ n; a NaN
    /// threshold (nothing kept) when k = 0.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">density outside [0, 1] (above 1 is taken as 1).</exception>
    public static TrimCut MagnitudeTrim(ReadOnlySpan<float> baseWeights, ReadOnlySpan<float> expert, double density)
    {
        if (expert.Length != baseWeights.Length) throw new ArgumentException($"expert has {expert.Length} elements, base {baseWeights.Length}", nameof(expert));
        if (density >= 1) return TrimCut.KeepAll;
        var select = new MagnitudeThreshold(MagnitudeThreshold.KeepCount(density, baseWeights.Length));
        select.CountCoarse(baseWeights, expert);
        if (select.NeedsFinePass) select.CountFine(baseWeights, expert);
        return select.Cut;
    }

    /// <summary>
    /// A float32 density as the decimal it was written as (0.7f is 0.699999988…; 0.7 · 10 must keep
    /// 7 entries, not 6), so ⌊density · n⌋ agrees with the same computation on the decimal value.
    /// </summary>
    public static double DensityValue(float density) =>
        double.Parse(density.ToString("R", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Elements per chunk: a chunk's task vectors (k × 16 KiB) stay in L2 between the sparsify and combine steps.</summary>
    private const int ChunkElements = 4096;

    /// <summary>Tensors at least this large are split over the thread pool (chunks are independent, so the result does not change).</summary>
    private const int ParallelElements = 1 << 18;

    private enum Sparsify { None, Trim, Dare }

    private enum Combine { Linear, Disjoint }

    /// <summary>
    /// How each chunk is made: τᵢ = θᵢ − θ_base, sparsified and multiplied by Gains[i] (when set), then
    /// combined into θ_base + λ · merged. Trim keeps |τᵢ| &gt; Thresholds[i], and |τᵢ| = Thresholds[i]
    /// at element indices ≤ LastTie[i].
    /// </summary>
    private sealed record ChunkPlan(Sparsify Sparsify, float[] Weights, float[]? Thresholds, long[]? LastTie, float[]? Densities, DareOptions Dare,
        Combine Combine, bool Normalize, float Divisor, float Lambda)
    {
        public float[]? Gains { get; init; }
    }

    private static float Divisor(ReadOnlySpan<float> weights)
    {
        float sum = 0;
        foreach (float w in weights) sum += w;
        if (!(MathF.Abs(sum) >= NormalizeEpsilon))
            throw new ArgumentException($"the weights sum to {sum.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}; they cannot be normalized (|Σ w| < 1e-8)", "weights");
        return sum;
    }

    private static void CheckDareDensities(ReadOnlySpan<float> densities, int experts)
    {
        if (densities.Length != experts) throw new ArgumentException($"{densities.Length} densities for {experts} experts", nameof(densities));
        foreach (float d in densities)
            if (!(d > 0 && d <= 1)) throw new ArgumentOutOfRangeException(nameof(densities), d, "a DARE density must be in (0, 1]");
    }

    /// <summary>
    /// The index of the last element kept among those with |τ| equal to the cut's threshold: −1 when
    /// none is kept, long.MaxValue when all are (the common case, found without a scan).
    /// </summary>
    private static long LastTieIndex(ReadOnlySpan<float> baseWeights, ReadOnlySpan<float> expert, TrimCut cut)
    {
        if (cut.TiesKept == MagnitudeThreshold.AllTies) return long.MaxValue;
        if (cut.TiesKept <= 0) return -1;
        long seen = 0;
        for (int j = 0; j < expert.Length; j++)
            if (MathF.Abs(expert[j] - baseWeights[j]) == cut.Threshold && ++seen == cut.TiesKept) return j;
        return long.MaxValue;
    }

    /// <summary>
    /// Per expert, Σ|τ| / Σ|τ̂| over the values passed, τ̂ being τ after the plan's sparsify step
    /// (1 when either sum is below <see cref="RescaleEpsilon"/>). Each chunk sums in float64 in element
    /// order and the chunks are added in order, so the gains do not depend on the thread count.
    /// </summary>
    private static float[] L1Gains(ReadOnlySpan<float> baseWeights, ReadOnlyMemory<float>[] experts, ChunkPlan plan)
    {
        int n = baseWeights.Length;
        int k = experts.Length;
        int chunks = (n + ChunkElements - 1) / ChunkElements;
        var partial = new double[chunks * k * 2];
        var sumPlan = plan with { Gains = null };
        ForEachChunk(baseWeights, experts, Span<float>.Empty, n, (b, e, _, c, scratch) =>
        {
            int start = c * ChunkElements;
            int len = Math.Min(ChunkElements, n - start);
            for (int i = 0; i < k; i++)
            {
                var tau = TaskVectorInto(b, e, i, start, len, scratch.AsSpan(i * ChunkElements, len));
                double before = 0, after = 0;
                for (int j = 0; j < len; j++) before += Math.Abs(tau[j]);
                SparsifyInPlace(tau, i, start, sumPlan);
                for (int j = 0; j < len; j++) after += Math.Abs(tau[j]);
                partial[(c * k + i) * 2] = before;
                partial[(c * k + i) * 2 + 1] = after;
            }
        });
        var gains = new float[k];
        for (int i = 0; i < k; i++)
        {
            double before = 0, after = 0;
            for (int c = 0; c < chunks; c++)
            {
                before += partial[(c * k + i) * 2];
                after += partial[(c * k + i) * 2 + 1];
            }
            gains[i] = before < RescaleEpsilon || after < RescaleEpsilon ? 1f : (float)(before / after);
        }
        return gains;
    }

    private delegate void ChunkBody(nint basePtr, nint[] experts, nint outPtr, int chunk, float[] scratch);

    private static void Run(ReadOnlySpan<float> baseWeights, ReadOnlyMemory<float>[] experts, Span<float> output, ChunkPlan plan)
    {
        int n = output.Length;
        ForEachChunk(baseWeights, experts, output, n, (b, e, o, c, scratch) => RunChunk(b, e, o, c, n, plan, scratch));
    }

    /// <summary>Calls <paramref name="body"/> for every chunk of n elements, in parallel for large n, with pinned pointers and a per-thread scratch of k chunks.</summary>
    private static unsafe void ForEachChunk(ReadOnlySpan<float> baseWeights, ReadOnlyMemory<float>[] experts, Span<float> output, int n, ChunkBody body)
    {
        if (n == 0) return;
        int k = experts.Length;
        var handles = new System.Buffers.MemoryHandle[k];
        try
        {
            var ptrs = new nint[k];
            for (int i = 0; i < k; i++)
            {
                handles[i] = experts[i].Pin();
                ptrs[i] = (nint)handles[i].Pointer;
            }
            fixed (float* pb = baseWeights, po = output)
            {
                nint b = (nint)pb, o = (nint)po;
                int chunks = (n + ChunkElements - 1) / ChunkElements;
                if (n < ParallelElements)
                {
                    var scratch = new float[Math.Max(k, 1) * ChunkElements];
                    for (int c = 0; c < chunks; c++) body(b, ptrs, o, c, scratch);
                }
                else
                {
                    Parallel.For(0, chunks, () => new float[Math.Max(k, 1) * ChunkElements],
                        (c, _, scratch) => { body(b, ptrs, o, c, scratch); return scratch; }, _ => { });
                }
            }
        }
        finally
        {
            foreach (var h in handles) h.Dispose();
        }
    }

    private static unsafe Span<float> TaskVectorInto(nint basePtr, nint[] experts, int i, int start, int len, Span<float> tau)
    {
        var b = new ReadOnlySpan<float>((float*)basePtr + start, len);
        var e = new ReadOnlySpan<float>((float*)experts[i] + start, len);
        TensorPrimitives.Subtract(e, b, tau);
        return tau;
    }

    /// <summary>τᵢ of one chunk, sparsified and multiplied by the plan's gain, in expert i's slot of the scratch.</summary>
    private static Span<float> SparsifiedTaskVector(nint basePtr, nint[] experts, int i, int start, int len, ChunkPlan plan, float[] scratch)
    {
        var tau = TaskVectorInto(basePtr, experts, i, start, len, scratch.AsSpan(i * ChunkElements, len));
        SparsifyInPlace(tau, i, start, plan);
        return tau;
    }

    /// <summary>The plan's sparsify step on expert i's chunk starting at element <paramref name="start"/>, then × Gains[i] on the kept entries.</summary>
    private static void SparsifyInPlace(Span<float> tau, int i, int start, ChunkPlan plan)
    {
        float gain = plan.Gains?[i] ?? 1f;
        switch (plan.Sparsify)
        {
            case Sparsify.Trim:
                KeepCut(tau, plan.Thresholds![i], plan.LastTie![i], start);
                if (gain != 1f) TensorPrimitives.Multiply(tau, gain, tau);
                break;
            case Sparsify.Dare:
                DropAndRescale(tau, plan.Dare.Seed, plan.Dare.TensorIndex, (uint)i, plan.Dare.FirstElement + start, plan.Densities![i], gain);
                break;
        }
    }

    private static unsafe void RunChunk(nint basePtr, nint[] experts, nint outPtr, int chunk, int n, ChunkPlan plan, float[] scratch)
    {
        int start = chunk * ChunkElements;
        int len = Math.Min(ChunkElements, n - start);
        var b = new ReadOnlySpan<float>((float*)basePtr + start, len);
        var o = new Span<float>((float*)outPtr + start, len);
        int k = experts.Length;
        for (int i = 0; i < k; i++) SparsifiedTaskVector(basePtr, experts, i, start, len, plan, scratch);
        if (plan.Combine == Combine.Linear) CombineLinear(scratch, k, len, plan, b, o);
        else CombineDisjoint(scratch, k, len, plan, b, o);
    }

    /// <summary>
    /// Zeroes the entries a trim drops: kept are |τ| &gt; threshold, and |τ| = threshold at element
    /// indices (first + j) ≤ lastTie. A NaN threshold keeps nothing.
    /// </summary>
    private static void KeepCut(Span<float> tau, float threshold, long lastTie, long first)
    {
        long last = first + tau.Length - 1;
        if (first <= lastTie && last > lastTie)
        {
            // The chunk holding the last kept tie: element by element.
            for (int j = 0; j < tau.Length; j++)
            {
                float m = MathF.Abs(tau[j]);
                bool keep = m > threshold || (m == threshold && first + j <= lastTie);
                if (!keep) tau[j] = 0f;
            }
            return;
        }
        bool tiesKept = last <= lastTie;
        var vt = MemoryMarshal.Cast<float, Vector<float>>(tau);
        var thr = new Vector<float>(threshold);
        for (int v = 0; v < vt.Length; v++)
        {
            var m = Vector.Abs(vt[v]);
            var keep = tiesKept ? Vector.GreaterThanOrEqual(m, thr) : Vector.GreaterThan(m, thr);
            vt[v] = Vector.ConditionalSelect(keep, vt[v], Vector<float>.Zero);
        }
        for (int j = vt.Length * Vector<float>.Count; j < tau.Length; j++)
        {
            float m = MathF.Abs(tau[j]);
            if (!(tiesKept ? m >= threshold : m > threshold)) tau[j] = 0f;
        }
    }

    /// <summary>DARE on one expert's chunk: element <paramref name="first"/> + j kept iff its Philox uniform &lt; density; kept ones × gain.</summary>
    private static void DropAndRescale(Span<float> tau, ulong seed, uint tensor, uint expert, long first, float density, float gain)
    {
        Span<uint> words = stackalloc uint[4];
        long block = -1;
        for (int j = 0; j < tau.Length; j++)
        {
            long element = first + j;
            if (element >> 2 != block)
            {
                block = element >> 2;
                var w = Philox4x32.Block(seed, tensor, expert, ((ulong)DarePurpose << 32) + (ulong)block);
                (words[0], words[1], words[2], words[3]) = w;
            }
            tau[j] = Philox4x32.ToUniform(words[(int)(element & 3)]) < density ? (gain == 1f ? tau[j] : tau[j] * gain) : 0f;
        }
    }

    /// <summary>merged = Σᵢ wᵢ τᵢ in expert order; / divisor when normalizing; × λ unless λ = 1; out = b + merged.</summary>
    private static void CombineLinear(float[] scratch, int k, int len, ChunkPlan plan, ReadOnlySpan<float> b, Span<float> o)
    {
        o.Clear();
        for (int i = 0; i < k; i++)
            TensorPrimitives.MultiplyAdd(scratch.AsSpan(i * ChunkElements, len), plan.Weights[i], o, o);
        if (plan.Normalize) TensorPrimitives.Divide(o, plan.Divisor, o);
        if (plan.Lambda != 1f) TensorPrimitives.Multiply(o, plan.Lambda, o);
        TensorPrimitives.Add(o, b, o);
    }

    /// <summary>
    /// TIES's election and disjoint merge per element, on the weighted deltas dᵢ = wᵢ τᵢ: s = Σᵢ dᵢ;
    /// the elected sign is + when s ≥ 0 (so an exact 0 elects +, and NaN elects −); the dᵢ of that
    /// sign (nonzero) agree: acc = Σ agreeing dᵢ, wsum = Σ their wᵢ; merged = acc / (wsum, or 1 where
    /// wsum = 0) when normalizing, else acc; × λ unless λ = 1; out = b + merged.
    /// </summary>
    private static void CombineDisjoint(float[] scratch, int k, int len, ChunkPlan plan, ReadOnlySpan<float> b, Span<float> o)
    {
        float[] weights = plan.Weights;
        bool normalize = plan.Normalize;
        float lambda = plan.Lambda;
        int w = Vector<float>.Count;
        int j = 0;
        var vlambda = new Vector<float>(lambda);
        for (; j <= len - w; j += w)
        {
            var sum = Vector<float>.Zero;
            for (int i = 0; i < k; i++) sum += new Vector<float>(weights[i]) * new Vector<float>(scratch.AsSpan(i * ChunkElements + j, w));
            var pos = Vector.GreaterThanOrEqual(sum, Vector<float>.Zero);
            var acc = Vector<float>.Zero;
            var wsum = Vector<float>.Zero;
            for (int i = 0; i < k; i++)
            {
                var wi = new Vector<float>(weights[i]);
                var d = wi * new Vector<float>(scratch.AsSpan(i * ChunkElements + j, w));
                var agree = Vector.ConditionalSelect(pos, Vector.GreaterThan(d, Vector<float>.Zero), Vector.LessThan(d, Vector<float>.Zero));
                acc += Vector.ConditionalSelect(agree, d, Vector<float>.Zero);
                wsum += Vector.ConditionalSelect(agree, wi, Vector<float>.Zero);
            }
            var merged = normalize
                ? acc / Vector.ConditionalSelect(Vector.Equals(wsum, Vector<float>.Zero), Vector<float>.One, wsum)
                : acc;
            if (lambda != 1f) merged *= vlambda;
            (new Vector<float>(b.Slice(j, w)) + merged).CopyTo(o.Slice(j, w));
        }
        for (; j < len; j++)
        {
            float sum = 0;
            for (int i = 0; i < k; i++) sum += weights[i] * scratch[i * ChunkElements + j];
            bool positive = sum >= 0;
            float acc = 0, wsum = 0;
            for (int i = 0; i < k; i++)
            {
                float d = weights[i] * scratch[i * ChunkElements + j];
                if (positive ? d > 0 : d < 0)
                {
                    acc += d;
                    wsum += weights[i];
                }
            }
            float merged = normalize ? acc / (wsum == 0 ? 1f : wsum) : acc;
            if (lambda != 1f) merged *= lambda;
            o[j] = b[j] + merged;
        }
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
/// <param name="Rescale">How kept entries are scaled up: <see cref="MergeRescale.L1Norm"/> (mergekit's default), <see cref="MergeRescale.InverseDensity"/> (the paper's 1/density) or none.</param>
/// <param name="Normalize">dare_linear: divide by Σ wᵢ; dare_ties: divide by the agreeing entries' weights.</param>
/// <param name="SignConsensus">Combine with TIES's sign election and disjoint mean (dare_ties).</param>
public readonly record struct DareOptions(ulong Seed, uint TensorIndex, long FirstElement = 0, float Lambda = 1f,
    MergeRescale Rescale = MergeRescale.L1Norm, bool Normalize = false, bool SignConsensus = false)
{
    /// <summary>
    /// Per-expert factors for the kept entries, used instead of computing them from the values passed:
    /// a tensor merged in parts passes <see cref="TaskVectorMerges.DareGains"/> of the whole tensor here.
    /// Null (default): computed from <see cref="Rescale"/> over the values passed.
    /// </summary>
    public float[]? Gains { get; init; }
}
