using CycleQD.Core.Archives;
using CycleQD.Core.Random;

namespace CycleQD.Core.Sampling;

/// <summary>How parents are drawn from the quality task's archive.</summary>
public enum SamplingKind
{
    /// <summary>Probability ∝ product of the normalised quality and BC coordinates (the paper's elite sampling).</summary>
    Elite,
    /// <summary>Uniform over the archive's elites.</summary>
    Random,
}

/// <summary>How elite sampling normalises a column of values (qualities or one BC's bin indices).</summary>
public enum SamplingNormaliser
{
    /// <summary>The paper: α_low + (x − min)/(max − min) · (α_high − α_low), i.e. into [α_low, α_high].</summary>
    Paper,
    /// <summary>The reference code: α_low + (x − min) · α_high/(max − min), i.e. into [α_low, α_low + α_high].</summary>
    Reference,
}

/// <summary>Parent-sampling settings.</summary>
/// <param name="Kind">Elite or random sampling.</param>
/// <param name="AlphaLow">α_low (default 0.5).</param>
/// <param name="AlphaHigh">α_high (default 0.8).</param>
/// <param name="Normaliser">Paper (default) or the reference code's mapping.</param>
public sealed record SamplingOptions(SamplingKind Kind = SamplingKind.Elite, double AlphaLow = 0.5, double AlphaHigh = 0.8,
    SamplingNormaliser Normaliser = SamplingNormaliser.Paper)
{
    /// <summary>Throws <see cref="ConfigurationException"/> on unusable values.</summary>
    public void Validate()
    {
        if (!(AlphaLow > 0) || !(AlphaHigh > AlphaLow))
            throw new ConfigurationException($"sampling: need 0 < alpha_low < alpha_high (got alpha_low = {AlphaLow}, alpha_high = {AlphaHigh})");
    }
}

/// <summary>Draws two distinct parents from an archive with Philox words keyed by (seed, generation).</summary>
public static class ParentSampler
{
    /// <summary>
    /// Selection probability of each elite of <paramref name="archive"/>, in <see cref="Archive.Cells"/>
    /// order. Elite sampling normalises the qualities and each BC's bin coordinate over the archive
    /// (a constant column maps to 1), multiplies them, and falls back to uniform when all products are 0.
    /// </summary>
    public static double[] Probabilities(Archive archive, SamplingOptions options)
    {
        var elites = archive.Cells.ToArray();
        int n = elites.Length;
        var p = new double[n];
        if (n == 0) return p;
        if (options.Kind == SamplingKind.Random)
        {
            Array.Fill(p, 1.0 / n);
            return p;
        }
        Array.Fill(p, 1.0);
        Multiply(p, elites.Select(e => archive.QualityOf(e.Value.Scores)).ToArray(), options);
        var coords = elites.Select(e => archive.Unflatten(e.Key)).ToArray();
        for (int d = 0; d < archive.BcTasks.Count; d++)
            Multiply(p, coords.Select(c => (double)c[d]).ToArray(), options);
        double sum = p.Sum();
        if (sum == 0) { Array.Fill(p, 1.0 / n); return p; }
        for (int i = 0; i < n; i++) p[i] /= sum;
        return p;
    }

    private static void Multiply(double[] p, double[] values, SamplingOptions o)
    {
        double min = values.Min(), max = values.Max();
        if (min == max) return;
        for (int i = 0; i < p.Length; i++)
        {
            double t = values[i] - min;
            p[i] *= o.Normaliser == SamplingNormaliser.Paper
                ? o.AlphaLow + t / (max - min) * (o.AlphaHigh - o.AlphaLow)
                : o.AlphaLow + t * (o.AlphaHigh / (max - min));
        }
    }

    /// <summary>
    /// Two distinct elites: the first with <see cref="Probabilities"/>, the second from the same
    /// probabilities renormalised without the first (numpy's choice(replace=False)). Uniform words
    /// 0 and 1 of stream <see cref="Streams.ParentSampling"/> for <paramref name="generation"/>.
    /// An archive holding one elite returns it twice (the child is then that elite, mutated).
    /// </summary>
    public static (Elite First, Elite Second) Draw(Archive archive, SamplingOptions options, ulong seed, uint generation)
    {
        var elites = archive.Cells.Values.ToArray();
        if (elites.Length == 0) throw new InvalidOperationException($"archive of {(archive.IsMean ? "the mean quality" : $"task {archive.Task}")} is empty");
        if (elites.Length == 1) return (elites[0], elites[0]);
        double[] p = Probabilities(archive, options);
        int a = Pick(p, Philox4x32.Uniform(seed, Streams.ParentSampling, generation, 0, 0), -1);
        int b = Pick(p, Philox4x32.Uniform(seed, Streams.ParentSampling, generation, 0, 1), a);
        return (elites[a], elites[b]);
    }

    /// <summary>Inverse-CDF pick of index for uniform <paramref name="u"/> in [0,1), skipping <paramref name="exclude"/>.</summary>
    internal static int Pick(double[] p, double u, int exclude)
    {
        double total = 0;
        for (int i = 0; i < p.Length; i++) if (i != exclude) total += p[i];
        double target = u * total, acc = 0;
        int last = -1;
        for (int i = 0; i < p.Length; i++)
        {
            if (i == exclude || p[i] <= 0) continue;
            acc += p[i];
            last = i;
            if (target < acc) return i;
        }
        return last >= 0 ? last : (exclude == 0 ? 1 : 0);
    }
}
