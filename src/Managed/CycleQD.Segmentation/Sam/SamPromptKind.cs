using CycleQD.Segmentation.Imaging;

namespace CycleQD.Segmentation.Sam;

/// <summary>How a prompt is derived from a ground-truth mask.</summary>
public enum SamPromptKind
{
    /// <summary>The mask's bounding box (the default; one mask is decoded).</summary>
    Box,
    /// <summary>One foreground point at the mask's centre (the pixel farthest from the background; the best of SAM's three masks is kept).</summary>
    Point,
}

/// <summary>Prompts drawn from ground truth, in the original image's pixel coordinates.</summary>
public static class GroundTruthPrompts
{
    /// <summary>Parses box or point.</summary>
    public static SamPromptKind Parse(string name) => name switch
    {
        "box" => SamPromptKind.Box,
        "point" => SamPromptKind.Point,
        _ => throw new ArgumentException($"unknown prompt kind '{name}' (known: box, point)"),
    };

    /// <summary>
    /// The tight bounding box x0, y0, x1, y1 of the foreground: the smallest and largest column and row
    /// of a foreground pixel, as SAM fine-tuning evaluations compute it (without the random jitter some
    /// training code adds).
    /// </summary>
    /// <exception cref="ArgumentException">The mask has no foreground.</exception>
    public static float[] BoundingBox(BinaryMask mask)
    {
        int x0 = int.MaxValue, y0 = int.MaxValue, x1 = -1, y1 = -1;
        for (int y = 0; y < mask.Height; y++)
            for (int x = 0; x < mask.Width; x++)
                if (mask.Pixels[y * mask.Width + x])
                {
                    x0 = Math.Min(x0, x); x1 = Math.Max(x1, x);
                    y0 = Math.Min(y0, y); y1 = Math.Max(y1, y);
                }
        if (x1 < 0) throw new ArgumentException("the mask has no foreground pixel to draw a prompt from");
        return [x0, y0, x1, y1];
    }

    /// <summary>
    /// The foreground pixel farthest (Euclidean) from any background pixel, the image border counting as
    /// background; ties go to the first in row-major order. Unlike the centroid it always lies inside the
    /// object, also for a ring or a crescent. Returns x, y.
    /// </summary>
    /// <exception cref="ArgumentException">The mask has no foreground.</exception>
    public static float[] CentrePoint(BinaryMask mask)
    {
        int w = mask.Width + 2, h = mask.Height + 2;
        var background = new bool[w * h];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                background[y * w + x] = x == 0 || y == 0 || x == w - 1 || y == h - 1 || !mask.Pixels[(y - 1) * mask.Width + x - 1];
        var d2 = new double[w * h];
        var nearest = new int[w * h];
        DistanceTransform.Compute(background, w, h, d2, nearest);
        int best = -1;
        double bestD = 0;
        for (int y = 1; y < h - 1; y++)
            for (int x = 1; x < w - 1; x++)
                if (!background[y * w + x] && d2[y * w + x] > bestD) { bestD = d2[y * w + x]; best = y * w + x; }
        if (best < 0) throw new ArgumentException("the mask has no foreground pixel to draw a prompt from");
        return [best % w - 1, best / w - 1];
    }
}
