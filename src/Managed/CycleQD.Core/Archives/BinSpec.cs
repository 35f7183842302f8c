namespace CycleQD.Core.Archives;

/// <summary>
/// How one behaviour characteristic (a task score) is cut into bins: edges linspace(Lower, Upper,
/// Count + 1), intervals closed on the right, indices clamped to [0, Count − 1] so that scores
/// outside the bounds land in the first or last bin (the reference's np.digitize(right=True) − 1).
/// </summary>
/// <param name="Lower">Lowest edge (score units, usually in [0, 1]).</param>
/// <param name="Upper">Highest edge; must exceed <paramref name="Lower"/>.</param>
/// <param name="Count">Number of bins G ≥ 1.</param>
public sealed record BinSpec(double Lower, double Upper, int Count)
{
    /// <summary>Throws <see cref="ConfigurationException"/> naming <paramref name="what"/> when the bounds or count are unusable.</summary>
    public void Validate(string what)
    {
        if (Count < 1) throw new ConfigurationException($"{what}: bins = {Count}, must be at least 1");
        if (!double.IsFinite(Lower) || !double.IsFinite(Upper))
            throw new ConfigurationException($"{what}: bounds must be finite (got [{Lower}, {Upper}])");
        if (Lower >= Upper) throw new ConfigurationException($"{what}: lower bound {Lower} must be below upper bound {Upper}");
    }

    /// <summary>The G + 1 edges as numpy.linspace computes them: Lower + i·step, the last one exactly Upper.</summary>
    public double[] Edges()
    {
        var e = new double[Count + 1];
        double step = (Upper - Lower) / Count;
        for (int i = 0; i <= Count; i++) e[i] = i * step + Lower;
        e[Count] = Upper;
        return e;
    }

    /// <summary>Bin of <paramref name="score"/>: (number of edges strictly below it) − 1, clamped to [0, G − 1]. NaN goes to bin 0.</summary>
    public int BinOf(double score)
    {
        double[] e = Edges();
        int below = 0;
        while (below < e.Length && e[below] < score) below++;
        return Math.Clamp(below - 1, 0, Count - 1);
    }

    /// <summary>The paper's rule: [0.85 × weakest expert's score, 1.15 × strongest's] on the task.</summary>
    public static BinSpec FromExpertScores(IEnumerable<double> expertScores, int count)
    {
        double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
        foreach (double s in expertScores) { lo = Math.Min(lo, s); hi = Math.Max(hi, s); }
        return new BinSpec(0.85 * lo, 1.15 * hi, count);
    }
}
