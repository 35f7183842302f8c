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
        TensorPrimitives.Multiply(models[0].Span, weights[0] * scale, output);
        for (int i = 1; i < models.Length; i++)
            TensorPrimitives.MultiplyAdd(models[i].Span, weights[i] * scale, output, output);
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
        var plan = new ChunkPlan(Sparsify.None, weights.ToArray(), null, null, default, Combine.Linear, scale, false);
        Run(baseWeights, experts, output, plan);
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
        for (int i = 0; i < experts.Length; i++) thresholds[i] = TrimThreshold(baseWeights, experts[i].Span, DensityValue(densities[i]));
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
        var plan = new ChunkPlan(Sparsify.Threshold, weights.ToArray(), thresholds.ToArray(), null, default, Combine.Disjoint, lambda, normalize);
        Run(baseWeights, experts, output, plan);
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
        float linearScale = options.Lambda;
        if (options.Normalize && !options.SignConsensus)
        {
            float sum = 0;
            foreach (float w in weights) sum += w;
            if (sum == 0) throw new ArgumentException("the weights sum to 0; they cannot be normalized", nameof(weights));
            linearScale = options.Lambda / sum;
        }
        var plan = new ChunkPlan(Sparsify.Dare, weights.ToArray(), null, densities.ToArray(), options,
            options.SignConsensus ? Combine.Disjoint : Combine.Linear, options.SignConsensus ? options.Lambda : linearScale, options.Normalize);
        Run(baseWeights, experts, output, plan);
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

    private enum Sparsify { None, Threshold, Dare }

    private enum Combine { Linear, Disjoint }

    /// <summary>How each chunk is made: τᵢ = θᵢ − θ_base, sparsified, then combined into θ_base + scale · merged.</summary>
    private sealed record ChunkPlan(Sparsify Sparsify, float[] Weights, float[]? Thresholds, float[]? Densities, DareOptions Dare,
        Combine Combine, float Scale, bool Normalize);

    private static unsafe void Run(ReadOnlySpan<float> baseWeights, ReadOnlyMemory<float>[] experts, Span<float> output, ChunkPlan plan)
    {
        int n = output.Length;
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
                    for (int c = 0; c < chunks; c++) RunChunk(b, ptrs, o, c, n, plan, scratch);
                }
                else
                {
                    Parallel.For(0, chunks, () => new float[Math.Max(k, 1) * ChunkElements],
                        (c, _, scratch) => { RunChunk(b, ptrs, o, c, n, plan, scratch); return scratch; }, _ => { });
                }
            }
        }
        finally
        {
            foreach (var h in handles) h.Dispose();
        }
    }

    private static unsafe void RunChunk(nint basePtr, nint[] experts, nint outPtr, int chunk, int n, ChunkPlan plan, float[] scratch)
    {
        int start = chunk * ChunkElements;
        int len = Math.Min(ChunkElements, n - start);
        var b = new ReadOnlySpan<float>((float*)basePtr + start, len);
        var o = new Span<float>((float*)outPtr + start, len);
        int k = experts.Length;
        for (int i = 0; i < k; i++)
        {
            var e = new ReadOnlySpan<float>((float*)experts[i] + start, len);
            var tau = scratch.AsSpan(i * ChunkElements, len);
            TensorPrimitives.Subtract(e, b, tau);
            switch (plan.Sparsify)
            {
                case Sparsify.Threshold:
                    KeepAtLeast(tau, plan.Thresholds![i]);
                    break;
                case Sparsify.Dare:
                    DropAndRescale(tau, plan.Dare.Seed, plan.Dare.TensorIndex, (uint)i, plan.Dare.FirstElement + start, plan.Densities![i], plan.Dare.Rescale);
                    break;
            }
        }
        if (plan.Combine == Combine.Linear) CombineLinear(scratch, k, len, plan.Weights, plan.Scale, b, o);
        else CombineDisjoint(scratch, k, len, plan.Weights, plan.Scale, plan.Normalize, b, o);
    }

    /// <summary>τ[j] = |τ[j]| ≥ threshold ? τ[j] : 0 (a NaN threshold keeps nothing).</summary>
    private static void KeepAtLeast(Span<float> tau, float threshold)
    {
        var vt = MemoryMarshal.Cast<float, Vector<float>>(tau);
        var thr = new Vector<float>(threshold);
        for (int v = 0; v < vt.Length; v++)
            vt[v] = Vector.ConditionalSelect(Vector.GreaterThanOrEqual(Vector.Abs(vt[v]), thr), vt[v], Vector<float>.Zero);
        for (int j = vt.Length * Vector<float>.Count; j < tau.Length; j++)
            tau[j] = MathF.Abs(tau[j]) >= threshold ? tau[j] : 0f;
    }

    /// <summary>DARE on one expert's chunk: element <paramref name="first"/> + j kept iff its Philox uniform &lt; density; kept ones × 1/density when rescaling.</summary>
    private static void DropAndRescale(Span<float> tau, ulong seed, uint tensor, uint expert, long first, float density, bool rescale)
    {
        float gain = rescale ? 1f / density : 1f;
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
            tau[j] = Philox4x32.ToUniform(words[(int)(element & 3)]) < density ? tau[j] * gain : 0f;
        }
    }

    /// <summary>out = b + scale · Σᵢ wᵢ τᵢ, accumulated in expert order.</summary>
    private static void CombineLinear(float[] scratch, int k, int len, float[] weights, float scale, ReadOnlySpan<float> b, Span<float> o)
    {
        o.Clear();
        for (int i = 0; i < k; i++)
            TensorPrimitives.MultiplyAdd(scratch.AsSpan(i * ChunkElements, len), weights[i], o, o);
        TensorPrimitives.MultiplyAdd(o, scale, b, o);
    }

    /// <summary>
    /// TIES's election and disjoint merge per element: s = Σᵢ wᵢ τᵢ; over the i with τᵢ of s's sign
    /// (nonzero), acc = Σ wᵢ τᵢ and wsum = Σ wᵢ; merged = acc / wsum when normalizing (0 if no entry
    /// agrees), else acc; out = b + scale · merged. s = 0 or NaN elects nothing.
    /// </summary>
    private static void CombineDisjoint(float[] scratch, int k, int len, float[] weights, float scale, bool normalize, ReadOnlySpan<float> b, Span<float> o)
    {
        int w = Vector<float>.Count;
        int j = 0;
        var vscale = new Vector<float>(scale);
        for (; j <= len - w; j += w)
        {
            var sum = Vector<float>.Zero;
            for (int i = 0; i < k; i++) sum += new Vector<float>(weights[i]) * new Vector<float>(scratch.AsSpan(i * ChunkElements + j, w));
            var pos = Vector.GreaterThan(sum, Vector<float>.Zero);
            var neg = Vector.LessThan(sum, Vector<float>.Zero);
            var acc = Vector<float>.Zero;
            var wsum = Vector<float>.Zero;
            for (int i = 0; i < k; i++)
            {
                var t = new Vector<float>(scratch.AsSpan(i * ChunkElements + j, w));
                var wi = new Vector<float>(weights[i]);
                var agree = (pos & Vector.GreaterThan(t, Vector<float>.Zero)) | (neg & Vector.LessThan(t, Vector<float>.Zero));
                acc += Vector.ConditionalSelect(agree, wi * t, Vector<float>.Zero);
                wsum += Vector.ConditionalSelect(agree, wi, Vector<float>.Zero);
            }
            var merged = normalize
                ? Vector.ConditionalSelect(Vector.Equals(wsum, Vector<float>.Zero), Vector<float>.Zero, acc / wsum)
                : acc;
            (new Vector<float>(b.Slice(j, w)) + vscale * merged).CopyTo(o.Slice(j, w));
        }
        for (; j < len; j++)
        {
            float sum = 0;
            for (int i = 0; i < k; i++) sum += weights[i] * scratch[i * ChunkElements + j];
            bool positive = sum > 0, negative = sum < 0;
            float acc = 0, wsum = 0;
            for (int i = 0; i < k; i++)
            {
                float t = scratch[i * ChunkElements + j];
                if ((positive && t > 0) || (negative && t < 0))
                {
                    acc += weights[i] * t;
                    wsum += weights[i];
                }
            }
            float merged = normalize ? (wsum == 0 ? 0f : acc / wsum) : acc;
            o[j] = b[j] + scale * merged;
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
/// <param name="Rescale">Multiply kept entries by 1/density (DARE's rescale; mergekit's default).</param>
/// <param name="Normalize">dare_linear: divide by Σ wᵢ; dare_ties: divide by the agreeing entries' weights.</param>
/// <param name="SignConsensus">Combine with TIES's sign election and disjoint mean (dare_ties).</param>
public readonly record struct DareOptions(ulong Seed, uint TensorIndex, long FirstElement = 0, float Lambda = 1f,
    bool Rescale = true, bool Normalize = false, bool SignConsensus = false);
