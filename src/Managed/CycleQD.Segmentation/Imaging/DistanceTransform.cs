namespace CycleQD.Segmentation.Imaging;

/// <summary>
/// Exact Euclidean distance transform with the index of the nearest feature pixel, by the
/// separable lower-envelope-of-parabolas method of Felzenszwalb and Huttenlocher ("Distance
/// Transforms of Sampled Functions", Theory of Computing 2012): a pass down each column, then
/// a pass along each row over the column results. It is what MATLAB's bwdist and SciPy's
/// distance_transform_edt (with indices) compute; where two feature pixels are equally near, the
/// one chosen may differ from theirs.
/// </summary>
public static class DistanceTransform
{
    /// <summary>
    /// For every pixel, the squared distance to the nearest pixel where <paramref name="feature"/>
    /// is true, and that pixel's row-major index. With no feature pixel at all, every distance is
    /// +∞ and every index −1.
    /// </summary>
    /// <param name="feature">[height, width] row-major.</param>
    /// <param name="width">Columns.</param>
    /// <param name="height">Rows.</param>
    /// <param name="squaredDistance">Output, [height, width], in squared pixels.</param>
    /// <param name="nearest">Output, [height, width], row-major index of the nearest feature pixel.</param>
    public static void Compute(ReadOnlySpan<bool> feature, int width, int height, Span<double> squaredDistance, Span<int> nearest)
    {
        int n = checked(width * height);
        if (feature.Length != n || squaredDistance.Length != n || nearest.Length != n)
            throw new ArgumentException($"distance transform of {width}×{height}: buffers must hold {n} pixels");

        // Column pass: nearest feature row in the same column (two scans).
        var colRow = new int[n];
        for (int x = 0; x < width; x++)
        {
            int last = -1;
            for (int y = 0; y < height; y++)
            {
                if (feature[y * width + x]) last = y;
                colRow[y * width + x] = last;
            }
            last = -1;
            for (int y = height - 1; y >= 0; y--)
            {
                int i = y * width + x;
                if (feature[i]) last = y;
                if (last >= 0 && (colRow[i] < 0 || last - y < y - colRow[i])) colRow[i] = last;
            }
        }

        // Row pass: lower envelope of the parabolas (x - q)² + f(q), f(q) = squared column distance.
        var f = new double[width];
        var v = new int[width];
        var z = new double[width + 1];
        for (int y = 0; y < height; y++)
        {
            int row = y * width;
            int k = -1;
            for (int q = 0; q < width; q++)
            {
                int r = colRow[row + q];
                if (r < 0) { f[q] = double.PositiveInfinity; continue; }
                f[q] = (double)(y - r) * (y - r);
                if (k < 0)
                {
                    k = 0; v[0] = q; z[0] = double.NegativeInfinity; z[1] = double.PositiveInfinity;
                    continue;
                }
                double s = Intersection(f, v[k], q);
                while (s <= z[k])
                {
                    k--;
                    s = Intersection(f, v[k], q);
                }
                k++;
                v[k] = q; z[k] = s; z[k + 1] = double.PositiveInfinity;
            }
            if (k < 0)
            {
                squaredDistance.Slice(row, width).Fill(double.PositiveInfinity);
                nearest.Slice(row, width).Fill(-1);
                continue;
            }
            int j = 0;
            for (int x = 0; x < width; x++)
            {
                while (z[j + 1] < x) j++;
                int q = v[j];
                squaredDistance[row + x] = (double)(x - q) * (x - q) + f[q];
                nearest[row + x] = colRow[row + q] * width + q;
            }
        }
    }

    /// <summary>Abscissa where the parabolas rooted at <paramref name="p"/> and <paramref name="q"/> (p &lt; q) meet.</summary>
    private static double Intersection(double[] f, int p, int q) =>
        ((f[q] + (double)q * q) - (f[p] + (double)p * p)) / (2.0 * (q - p));
}
