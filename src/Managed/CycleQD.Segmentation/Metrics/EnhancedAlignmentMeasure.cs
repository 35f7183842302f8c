namespace CycleQD.Segmentation.Metrics;

/// <summary>
/// Mean E-measure (Fan, Gong, Cao, Ren, Cheng and Borji, "Enhanced-alignment Measure for Binary
/// Foreground Map Evaluation", IJCAI 2018), in [0, 1].
/// </summary>
/// <remarks>
/// For a binary foreground map FM and ground truth GT: φ = X − mean(X) for each, the alignment
/// ξ = 2·φ_GT·φ_FM / (φ_GT² + φ_FM² + ε), the enhanced alignment (1 + ξ)² / 4, and
/// E = (1 / (W·H)) Σ of it (the paper's normalisation; the authors' MATLAB code divides by W·H − 1,
/// a relative difference of 1 / (W·H)). An all-background GT gives the share of background pixels in FM,
/// an all-foreground GT the share of foreground pixels (the paper's special cases).
/// The "mean E" reported for a grey map P in [0, 1] is the mean over the 256 binary maps
/// FM_t = [⌊255·P⌋ ≥ t], t = 0 … 255, as the SOD/COD evaluation toolkits compute it; for a 0/1
/// map this is (255·E(P) + E(all foreground)) / 256. Computed from per-threshold counts, since every
/// pixel of one (FM, GT) class has the same enhanced alignment.
/// </remarks>
public static class EnhancedAlignmentMeasure
{
    private const double Eps = 2.220446049250313e-16;

    /// <summary>E of one binary foreground map.</summary>
    /// <param name="foreground">[height, width] row-major binary map.</param>
    /// <param name="truth">[height, width] row-major.</param>
    /// <param name="width">Columns.</param>
    /// <param name="height">Rows.</param>
    public static double Binary(ReadOnlySpan<bool> foreground, ReadOnlySpan<bool> truth, int width, int height)
    {
        if (width <= 0 || height <= 0 || foreground.Length != checked(width * height) || truth.Length != foreground.Length)
            throw new ArgumentException($"foreground map ({foreground.Length} pixels) and ground truth ({truth.Length} pixels) must both hold {width}×{height} pixels");
        long tp = 0, fp = 0, gt = 0;
        for (int i = 0; i < truth.Length; i++)
        {
            if (truth[i]) gt++;
            if (foreground[i]) { if (truth[i]) tp++; else fp++; }
        }
        return FromCounts(tp, fp, gt, truth.Length);
    }

    /// <summary>Mean E over the 256 thresholds of a grey prediction map.</summary>
    /// <param name="prediction">[height, width] row-major, values in [0, 1].</param>
    /// <param name="truth">[height, width] row-major.</param>
    /// <param name="width">Columns.</param>
    /// <param name="height">Rows.</param>
    public static double Mean(ReadOnlySpan<float> prediction, ReadOnlySpan<bool> truth, int width, int height)
    {
        MapCheck.SameSize(prediction, truth, width, height);
        var fgHist = new long[256];
        var bgHist = new long[256];
        long gt = 0;
        for (int i = 0; i < truth.Length; i++)
        {
            int level = Math.Clamp((int)(prediction[i] * 255f), 0, 255);
            if (truth[i]) { fgHist[level]++; gt++; }
            else bgHist[level]++;
        }
        double sum = 0;
        long tp = 0, fp = 0;
        for (int t = 255; t >= 0; t--)
        {
            tp += fgHist[t];
            fp += bgHist[t];
            sum += FromCounts(tp, fp, gt, truth.Length);
        }
        return sum / 256;
    }

    /// <summary>E from the counts of one binary map: true and false positives, ground-truth foreground, pixels.</summary>
    internal static double FromCounts(long tp, long fp, long gt, long n)
    {
        long predFg = tp + fp;
        if (gt == 0) return (double)(n - predFg) / n;
        if (gt == n) return (double)predFg / n;
        long fn = gt - tp;
        long tn = n - predFg - fn;
        double meanFm = (double)predFg / n, meanGt = (double)gt / n;
        double sum = tp * Enhanced(1 - meanFm, 1 - meanGt)
                   + fp * Enhanced(1 - meanFm, -meanGt)
                   + fn * Enhanced(-meanFm, 1 - meanGt)
                   + tn * Enhanced(-meanFm, -meanGt);
        return sum / n;
    }

    private static double Enhanced(double fm, double gt)
    {
        double xi = 2 * fm * gt / (fm * fm + gt * gt + Eps);
        return (1 + xi) * (1 + xi) / 4;
    }
}
