using CycleQD.Onnx.Generation;
using CycleQD.Onnx.Graph;

namespace CycleQD.Onnx.Runtime;

/// <summary>One step of a <see cref="GraphComparison"/>: the prompts (step 0) or a decoding step.</summary>
/// <param name="Step">0 for the prompts, then 1, 2, …</param>
/// <param name="WorstRelativeError">The largest ‖candidate − reference‖/‖reference‖ over the rows' logits (NaN when any logit is NaN).</param>
/// <param name="SameGreedyRows">Rows whose greedy token is the same in both.</param>
public sealed record GraphComparisonStep(int Step, double WorstRelativeError, int SameGreedyRows);

/// <summary>
/// Two sessions of one architecture (say the fused graph against the plain graph, the reference) run
/// on the same weights and prompts: the prompts are prefilled, then each decoding step feeds both the
/// reference's greedy tokens, so a difference in one step does not carry into the next. Each step
/// reports the worst relative difference of the rows' logits.
/// </summary>
public static class GraphComparison
{
    /// <summary>
    /// The worst relative difference a step may show between two graphs in <paramref name="type"/>:
    /// rounding, with room for different operator orders. Wrong positions, masks or caches give
    /// differences of order 1.
    /// </summary>
    public static double Tolerance(OnnxElementType type) => type switch
    {
        OnnxElementType.Float => 1e-4,
        OnnxElementType.Float16 => 3e-2,
        _ => 1e-1,
    };

    /// <summary>Runs <paramref name="prompts"/> (one row each, any lengths) and <paramref name="steps"/> decoding steps on both sessions.</summary>
    /// <param name="reference">The session whose greedy tokens both are fed.</param>
    /// <param name="candidate">The session compared with it.</param>
    /// <param name="weights">Weights of the architecture, in both sessions' element type and memory.</param>
    /// <param name="prompts">Token ids per row (at least one token each).</param>
    /// <param name="steps">Decoding steps after the prompts.</param>
    /// <returns>Step 0 (the prompts) and each decoding step.</returns>
    /// <exception cref="ArgumentException">sessions of different architectures, no prompts, or fewer than 0 steps.</exception>
    public static IReadOnlyList<GraphComparisonStep> Run(ILlamaSession reference, ILlamaSession candidate, LlamaWeights weights,
        IReadOnlyList<int[]> prompts, int steps)
    {
        if (reference.Config != candidate.Config) throw new ArgumentException("the two sessions run different architectures");
        if (prompts.Count == 0) throw new ArgumentException("no prompts", nameof(prompts));
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        int rows = prompts.Count, vocab = reference.Config.VocabSize, capacity = prompts.Max(p => p.Length) + steps;
        var result = new List<GraphComparisonStep>(steps + 1);
        using var r = reference.StartBatch(weights, rows, capacity);
        using var c = candidate.StartBatch(weights, rows, capacity);
        var lr = r.Prefill(prompts);
        var lc = c.Prefill(prompts);
        for (int step = 0; ; step++)
        {
            double worst = 0;
            int same = 0;
            var next = new int[rows];
            for (int row = 0; row < rows; row++)
            {
                var expected = lr.AsSpan(row * vocab, vocab);
                var cand = lc.AsSpan(row * vocab, vocab);
                worst = Math.Max(worst, RelativeDifference(cand, expected));
                next[row] = LlamaGenerator.ArgMax(expected);
                if (LlamaGenerator.ArgMax(cand) == next[row]) same++;
            }
            result.Add(new GraphComparisonStep(step, worst, same));
            if (step == steps) return result;
            lr = r.Decode(next);
            lc = c.Decode(next);
        }
    }

    /// <summary>‖a − b‖ / ‖b‖ in double (∞ when b is zero and a is not; NaN anywhere gives NaN, which no tolerance passes).</summary>
    public static double RelativeDifference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"{a.Length} values against {b.Length}");
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = (double)a[i] - b[i];
            num += d * d;
            den += (double)b[i] * b[i];
        }
        return den > 0 ? Math.Sqrt(num / den) : num > 0 ? double.PositiveInfinity : 0;
    }
}
