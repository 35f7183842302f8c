namespace CycleQD.Segmentation.Imaging;

/// <summary>The two resizes SAM's pipeline uses: Pillow's bilinear for the 8-bit input image, PyTorch's for the mask logits.</summary>
public static class Resampling
{
    /// <summary>
    /// Resizes an 8-bit RGB image as Pillow's <c>Image.resize(size, BILINEAR)</c> does, which is what
    /// SAM's ResizeLongestSide.apply_image calls: a separable triangle filter whose support widens with
    /// the downscale factor (so shrinking averages, i.e. antialiases), sample centres at +0.5, weights
    /// normalised per output pixel, horizontal pass first, each pass rounded and clipped to 8 bits.
    /// Pillow computes the weights in fixed point; this uses doubles, so a value can differ by one grey level.
    /// </summary>
    /// <param name="image">Source image.</param>
    /// <param name="width">Output columns (≥ 1).</param>
    /// <param name="height">Output rows (≥ 1).</param>
    public static RgbImage ResizeBilinear(RgbImage image, int width, int height)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"resize to {width}×{height}: size must be positive");
        var src = image.Pixels;
        byte[] horizontal;
        if (width == image.Width) horizontal = src;
        else
        {
            var (starts, counts, weights, ksize) = Coefficients(image.Width, width);
            horizontal = new byte[image.Height * width * 3];
            for (int y = 0; y < image.Height; y++)
                for (int x = 0; x < width; x++)
                    for (int c = 0; c < 3; c++)
                    {
                        double s = 0;
                        for (int k = 0; k < counts[x]; k++) s += weights[x * ksize + k] * src[(y * image.Width + starts[x] + k) * 3 + c];
                        horizontal[(y * width + x) * 3 + c] = Clip8(s);
                    }
        }
        if (height == image.Height) return new RgbImage(width, height, horizontal == src ? (byte[])src.Clone() : horizontal);
        var (ys, yc, yw, yk) = Coefficients(image.Height, height);
        var dst = new byte[height * width * 3];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                for (int c = 0; c < 3; c++)
                {
                    double s = 0;
                    for (int k = 0; k < yc[y]; k++) s += yw[y * yk + k] * horizontal[((ys[y] + k) * width + x) * 3 + c];
                    dst[(y * width + x) * 3 + c] = Clip8(s);
                }
        return new RgbImage(width, height, dst);
    }

    /// <summary>Per output index: first input index, tap count and normalised triangle-filter weights (Pillow's precompute_coeffs).</summary>
    private static (int[] Starts, int[] Counts, double[] Weights, int KSize) Coefficients(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize;
        double filterScale = Math.Max(scale, 1.0);
        double support = 1.0 * filterScale; // the triangle filter's support is 1
        int ksize = (int)Math.Ceiling(support) * 2 + 1;
        var starts = new int[outSize];
        var counts = new int[outSize];
        var weights = new double[outSize * ksize];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale;
            int xmin = Math.Max((int)(center - support + 0.5), 0);
            int xmax = Math.Min((int)(center + support + 0.5), inSize) - xmin;
            double total = 0;
            for (int x = 0; x < xmax; x++)
            {
                double t = Math.Abs((x + xmin - center + 0.5) / filterScale);
                double w = t < 1 ? 1 - t : 0;
                weights[xx * ksize + x] = w;
                total += w;
            }
            if (total != 0)
                for (int x = 0; x < xmax; x++) weights[xx * ksize + x] /= total;
            starts[xx] = xmin;
            counts[xx] = xmax;
        }
        return (starts, counts, weights, ksize);
    }

    private static byte Clip8(double v) => v <= 0 ? (byte)0 : v >= 255 ? (byte)255 : (byte)(int)(v + 0.5);

    /// <summary>
    /// Resizes a single-channel float map as PyTorch's <c>F.interpolate(mode="bilinear",
    /// align_corners=False)</c> (no antialiasing), which SAM's postprocess_masks uses: the source
    /// coordinate of output pixel i is max((i + 0.5)·in/out − 0.5, 0), interpolated between its two
    /// neighbours (the last one repeated at the edge).
    /// </summary>
    /// <param name="src">[srcHeight, srcWidth] row-major.</param>
    /// <param name="srcWidth">Source columns.</param>
    /// <param name="srcHeight">Source rows.</param>
    /// <param name="width">Output columns.</param>
    /// <param name="height">Output rows.</param>
    /// <returns>[height, width] row-major, newly allocated.</returns>
    public static float[] ResizeBilinear(ReadOnlySpan<float> src, int srcWidth, int srcHeight, int width, int height)
    {
        if (src.Length != checked(srcWidth * srcHeight)) throw new ArgumentException($"map of {srcWidth}×{srcHeight} needs {srcWidth * srcHeight} values, got {src.Length}");
        if (width <= 0 || height <= 0) throw new ArgumentException($"resize to {width}×{height}: size must be positive");
        var (x0, x1, xl) = Taps(srcWidth, width);
        var (y0, y1, yl) = Taps(srcHeight, height);
        var dst = new float[width * height];
        for (int y = 0; y < height; y++)
        {
            int r0 = y0[y] * srcWidth, r1 = y1[y] * srcWidth;
            float ly = yl[y];
            for (int x = 0; x < width; x++)
            {
                float lx = xl[x];
                float top = (1 - lx) * src[r0 + x0[x]] + lx * src[r0 + x1[x]];
                float bottom = (1 - lx) * src[r1 + x0[x]] + lx * src[r1 + x1[x]];
                dst[y * width + x] = (1 - ly) * top + ly * bottom;
            }
        }
        return dst;
    }

    private static (int[] I0, int[] I1, float[] Lambda) Taps(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize;
        var i0 = new int[outSize];
        var i1 = new int[outSize];
        var l = new float[outSize];
        for (int i = 0; i < outSize; i++)
        {
            double s = Math.Max((i + 0.5) * scale - 0.5, 0);
            int a = Math.Min((int)s, inSize - 1);
            i0[i] = a;
            i1[i] = Math.Min(a + 1, inSize - 1);
            l[i] = (float)(s - a);
        }
        return (i0, i1, l);
    }
}
