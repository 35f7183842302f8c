namespace CycleQD.Segmentation.Metrics;

/// <summary>
/// S-measure (Fan, Cheng, Liu, Li and Borji, "Structure-measure: A New Way to Evaluate Foreground
/// Maps", ICCV 2017): S = α·S_o + (1 − α)·S_r with α = 0.5, clipped below at 0, in [0, 1].
/// </summary>
/// <remarks>
/// Follows the paper and the authors' MATLAB release (as the PySODMetrics package reproduces it):
/// <list type="bullet">
/// <item>An all-background ground truth scores 1 − mean(P); an all-foreground one mean(P).</item>
/// <item>Object term S_o = μ·O(P over G) + (1 − μ)·O(1 − P over not G), μ = mean(G), where
/// O(x) = 2·x̄ / (x̄² + 1 + σ_x + ε) and σ_x is the sample standard deviation (N − 1).</item>
/// <item>Region term S_r: the ground truth's centroid (row and column means of its foreground
/// pixels, rounded half to even, plus one as in the 1-based MATLAB code) splits both maps into
/// four quadrants, each scored by the SSIM-like
/// 4·x̄·ȳ·σ_xy / ((x̄² + ȳ²)(σ_x² + σ_y²) + ε) (sample (co)variances), 1 when numerator and
/// denominator are both 0, and 0 when only the numerator is; weighted by the quadrant's share of the image.</item>
/// </list>
/// Degenerate cases that the reference leaves to NaN are given values here: a one-pixel sample has
/// zero spread (σ = 0), and an empty quadrant (weight 0) adds nothing.
/// </remarks>
public static class StructureMeasure
{
    private const double Eps = 2.220446049250313e-16;

    /// <param name="prediction">[height, width] row-major, values in [0, 1].</param>
    /// <param name="truth">[height, width] row-major.</param>
    /// <param name="width">Columns.</param>
    /// <param name="height">Rows.</param>
    /// <param name="alpha">Weight of the object term.</param>
    public static double Compute(ReadOnlySpan<float> prediction, ReadOnlySpan<bool> truth, int width, int height, double alpha = 0.5)
    {
        MapCheck.SameSize(prediction, truth, width, height);
        long fg = 0;
        double predSum = 0;
        for (int i = 0; i < truth.Length; i++)
        {
            if (truth[i]) fg++;
            predSum += prediction[i];
        }
        int n = truth.Length;
        if (fg == 0) return 1 - predSum / n;
        if (fg == n) return predSum / n;
        double s = alpha * Object(prediction, truth) + (1 - alpha) * Region(prediction, truth, width, height);
        return Math.Max(0, s);
    }

    private static double Object(ReadOnlySpan<float> p, ReadOnlySpan<bool> g)
    {
        double mu = 0;
        foreach (bool b in g) if (b) mu++;
        mu /= g.Length;
        return mu * ObjectScore(p, g, foreground: true) + (1 - mu) * ObjectScore(p, g, foreground: false);
    }

    /// <summary>O(x) over the pixels of one side: x = P inside the foreground, 1 − P inside the background.</summary>
    private static double ObjectScore(ReadOnlySpan<float> p, ReadOnlySpan<bool> g, bool foreground)
    {
        double sum = 0;
        long count = 0;
        for (int i = 0; i < g.Length; i++)
            if (g[i] == foreground) { sum += foreground ? p[i] : 1 - p[i]; count++; }
        double mean = sum / count;
        double ss = 0;
        for (int i = 0; i < g.Length; i++)
            if (g[i] == foreground)
            {
                double d = (foreground ? p[i] : 1 - p[i]) - mean;
                ss += d * d;
            }
        double std = count > 1 ? Math.Sqrt(ss / (count - 1)) : 0;
        return 2 * mean / (mean * mean + 1 + std + Eps);
    }

    private static double Region(ReadOnlySpan<float> p, ReadOnlySpan<bool> g, int width, int height)
    {
        double sumRow = 0, sumCol = 0;
        long count = 0;
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                if (g[y * width + x]) { sumRow += y; sumCol += x; count++; }
        // Split point: the first column/row of the right/bottom quadrants (MATLAB's 1-based centroid).
        int cy = (int)Math.Round(sumRow / count, MidpointRounding.ToEven) + 1;
        int cx = (int)Math.Round(sumCol / count, MidpointRounding.ToEven) + 1;
        double area = (double)width * height;
        double wLt = (double)cx * cy / area;
        double wRt = (double)cy * (width - cx) / area;
        double wLb = (double)(height - cy) * cx / area;
        double wRb = 1 - wLt - wRt - wLb;
        return wLt * Ssim(p, g, width, 0, cy, 0, cx)
             + wRt * Ssim(p, g, width, 0, cy, cx, width)
             + wLb * Ssim(p, g, width, cy, height, 0, cx)
             + wRb * Ssim(p, g, width, cy, height, cx, width);
    }

    /// <summary>The SSIM-like score of rows [y0, y1) × columns [x0, x1); 0 for an empty block (its weight is 0).</summary>
    private static double Ssim(ReadOnlySpan<float> p, ReadOnlySpan<bool> g, int width, int y0, int y1, int x0, int x1)
    {
        long n = (long)(y1 - y0) * (x1 - x0);
        if (n <= 0) return 0;
        double mx = 0, my = 0;
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) { mx += p[y * width + x]; my += g[y * width + x] ? 1 : 0; }
        mx /= n; my /= n;
        double sxx = 0, syy = 0, sxy = 0;
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++)
            {
                double dx = p[y * width + x] - mx, dy = (g[y * width + x] ? 1 : 0) - my;
                sxx += dx * dx; syy += dy * dy; sxy += dx * dy;
            }
        double denomN = n > 1 ? n - 1 : double.PositiveInfinity; // one pixel: no spread
        sxx /= denomN; syy /= denomN; sxy /= denomN;
        double a = 4 * mx * my * sxy;
        double b = (mx * mx + my * my) * (sxx + syy);
        if (a != 0) return a / (b + Eps);
        return b == 0 ? 1 : 0;
    }
}
