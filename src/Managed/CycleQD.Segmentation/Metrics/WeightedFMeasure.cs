using CycleQD.Segmentation.Imaging;

namespace CycleQD.Segmentation.Metrics;

/// <summary>
/// Weighted F-measure (Margolin, Zelnik-Manor and Tal, "How to Evaluate Foreground Maps?",
/// CVPR 2014) with β² = 1, in [0, 1].
/// </summary>
/// <remarks>
/// Follows the paper and the authors' MATLAB code step by step:
/// E = |P − G|; outside the foreground each error is replaced by the error at the nearest foreground
/// pixel (Euclidean distance transform with indices), to treat the object's edges correctly; that map
/// is filtered with the 7×7 Gaussian of σ = 5 (MATLAB fspecial, normalised to sum 1; zero beyond the
/// image, correlation as imfilter); inside the foreground the smaller of filtered and raw error is kept
/// (pixel dependency); background errors are weighted by 2 − exp(ln(0.5) / 5 · d), d the distance to the
/// foreground (pixel importance). With Ew the result: TPw = |G| − Σ_G Ew, FPw = Σ_¬G Ew,
/// R = 1 − mean_G(Ew), P = TPw / (TPw + FPw + ε), F = 2·R·P / (R + P + ε).
/// A ground truth with no foreground scores 0, as in the evaluation toolkits.
/// </remarks>
public static class WeightedFMeasure
{
    private const double Eps = 2.220446049250313e-16;

    /// <param name="prediction">[height, width] row-major, values in [0, 1].</param>
    /// <param name="truth">[height, width] row-major.</param>
    /// <param name="width">Columns.</param>
    /// <param name="height">Rows.</param>
    public static double Compute(ReadOnlySpan<float> prediction, ReadOnlySpan<bool> truth, int width, int height)
    {
        MapCheck.SameSize(prediction, truth, width, height);
        int n = truth.Length;
        long fgCount = 0;
        foreach (bool b in truth) if (b) fgCount++;
        if (fgCount == 0) return 0;

        var d2 = new double[n];
        var nearest = new int[n];
        DistanceTransform.Compute(truth, width, height, d2, nearest);

        var e = new double[n];
        for (int i = 0; i < n; i++) e[i] = Math.Abs(prediction[i] - (truth[i] ? 1.0 : 0.0));
        var et = new double[n];
        for (int i = 0; i < n; i++) et[i] = truth[i] ? e[i] : e[nearest[i]];

        var ea = GaussianFilter(et, width, height);

        double sumEwFg = 0, sumEwBg = 0;
        double decay = Math.Log(0.5) / 5;
        for (int i = 0; i < n; i++)
        {
            if (truth[i])
                sumEwFg += ea[i] < e[i] ? ea[i] : e[i];
            else
                sumEwBg += e[i] * (2 - Math.Exp(decay * Math.Sqrt(d2[i])));
        }
        double tpw = fgCount - sumEwFg;
        double fpw = sumEwBg;
        double r = 1 - sumEwFg / fgCount;
        double p = tpw / (tpw + fpw + Eps);
        return 2 * r * p / (r + p + Eps);
    }

    /// <summary>MATLAB's fspecial('gaussian', 7, 5): exp(−(x² + y²) / (2σ²)) on a 7×7 grid, normalised to sum 1.</summary>
    internal static double[] Gaussian7x7Sigma5()
    {
        var k = new double[49];
        double sum = 0;
        for (int y = -3; y <= 3; y++)
            for (int x = -3; x <= 3; x++)
                sum += k[(y + 3) * 7 + x + 3] = Math.Exp(-(x * x + y * y) / (2.0 * 5 * 5));
        for (int i = 0; i < k.Length; i++) k[i] /= sum;
        return k;
    }

    /// <summary>
    /// Correlation with the 7×7 Gaussian, zero outside the image, output the size of the input. The kernel is
    /// the outer product of the normalised 1-D Gaussian with itself, so two 1-D passes give the same sums.
    /// </summary>
    internal static double[] GaussianFilter(double[] src, int width, int height)
    {
        var g = new double[7];
        double total = 0;
        for (int i = 0; i < 7; i++) total += g[i] = Math.Exp(-(i - 3) * (i - 3) / (2.0 * 5 * 5));
        for (int i = 0; i < 7; i++) g[i] /= total;
        var rows = new double[src.Length];
        for (int y = 0; y < height; y++)
        {
            int r = y * width;
            for (int x = 0; x < width; x++)
            {
                double acc = 0;
                int lo = Math.Max(-3, -x), hi = Math.Min(3, width - 1 - x);
                for (int d = lo; d <= hi; d++) acc += g[d + 3] * src[r + x + d];
                rows[r + x] = acc;
            }
        }
        var dst = new double[src.Length];
        for (int y = 0; y < height; y++)
        {
            int lo = Math.Max(-3, -y), hi = Math.Min(3, height - 1 - y);
            for (int d = lo; d <= hi; d++)
            {
                double w = g[d + 3];
                int srcRow = (y + d) * width, dstRow = y * width;
                for (int x = 0; x < width; x++) dst[dstRow + x] += w * rows[srcRow + x];
            }
        }
        return dst;
    }
}
