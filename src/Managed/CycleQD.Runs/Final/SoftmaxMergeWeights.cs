namespace CycleQD.Runs.Final;

/// <summary>
/// The paper's final-merge coefficients: β = softmax(q / T) over the archives' best elites, q_k being
/// elite k's quality on its own archive's task (search split), so the merge is θ_base + Σ_k β_k τ_k.
/// </summary>
public static class SoftmaxMergeWeights
{
    /// <summary>β_k = exp(q_k / T) / Σ_j exp(q_j / T), computed with the maximum subtracted (no overflow).</summary>
    /// <exception cref="ArgumentException">no quality, a non-finite one, or T ≤ 0.</exception>
    public static double[] Of(IReadOnlyList<double> qualities, double temperature)
    {
        if (qualities.Count == 0) throw new ArgumentException("softmax of no qualities", nameof(qualities));
        if (!(temperature > 0) || !double.IsFinite(temperature)) throw new ArgumentException($"softmax temperature {temperature} must be > 0", nameof(temperature));
        if (qualities.Any(q => !double.IsFinite(q))) throw new ArgumentException($"softmax of non-finite qualities [{string.Join(", ", qualities)}]", nameof(qualities));
        double max = qualities.Max();
        var e = qualities.Select(q => Math.Exp((q - max) / temperature)).ToArray();
        double sum = e.Sum();
        return e.Select(x => x / sum).ToArray();
    }
}
