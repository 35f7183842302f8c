using CycleQD.Segmentation.Imaging;

namespace CycleQD.Segmentation.Sam;

/// <summary>
/// SAM's input and output transforms for one image size (segment_anything's ResizeLongestSide,
/// SamPredictor.set_image and postprocess_masks): the image's longest side is resized to
/// <see cref="ImageSize"/>, pixels normalised with SAM's ImageNet mean and standard deviation and the
/// result zero-padded at the bottom and right to a square; prompt coordinates are scaled by the same
/// factors; low-resolution mask logits are upsampled to the square, cropped to the unpadded region,
/// resized to the original image and thresholded at 0.
/// </summary>
/// <param name="ImageSize">Side of the square encoder input (1024 for the public checkpoints).</param>
public sealed record SamImageTransform(int ImageSize)
{
    /// <summary>SAM's pixel mean, R G B, on the 0–255 scale.</summary>
    public static readonly float[] PixelMean = [123.675f, 116.28f, 103.53f];

    /// <summary>SAM's pixel standard deviation, R G B, on the 0–255 scale.</summary>
    public static readonly float[] PixelStd = [58.395f, 57.12f, 57.375f];

    /// <summary>Size after resizing the longest side: scale = ImageSize / max(h, w), each side int(side · scale + 0.5).</summary>
    public (int Width, int Height) ResizedSize(int width, int height)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"image size {width}×{height} is empty");
        double scale = (double)ImageSize / Math.Max(width, height);
        return ((int)(width * scale + 0.5), (int)(height * scale + 0.5));
    }

    /// <summary>
    /// The encoder input for <paramref name="image"/>: [3, ImageSize, ImageSize] CHW float32,
    /// (resized pixel − mean) / std inside the resized region and 0 in the padding. Newly allocated.
    /// </summary>
    public float[] Preprocess(RgbImage image)
    {
        var (w, h) = ResizedSize(image.Width, image.Height);
        var resized = Resampling.ResizeBilinear(image, w, h);
        int s = ImageSize;
        var chw = new float[3 * s * s];
        for (int c = 0; c < 3; c++)
        {
            float mean = PixelMean[c], inv = 1f / PixelStd[c];
            int plane = c * s * s;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    chw[plane + y * s + x] = (resized.Pixels[(y * w + x) * 3 + c] - mean) * inv;
        }
        return chw;
    }

    /// <summary>Scales x, y pairs (or boxes x0, y0, x1, y1) from original-image pixels to the resized image (apply_coords / apply_boxes).</summary>
    /// <param name="coords">Interleaved x, y values; not modified.</param>
    /// <param name="width">Original image width.</param>
    /// <param name="height">Original image height.</param>
    public float[] TransformCoords(ReadOnlySpan<float> coords, int width, int height)
    {
        if (coords.Length % 2 != 0) throw new ArgumentException($"coordinates come in x, y pairs (got {coords.Length} values)");
        var (w, h) = ResizedSize(width, height);
        var o = new float[coords.Length];
        for (int i = 0; i < coords.Length; i += 2)
        {
            o[i] = (float)(coords[i] * ((double)w / width));
            o[i + 1] = (float)(coords[i + 1] * ((double)h / height));
        }
        return o;
    }

    /// <summary>
    /// Mask logits at the original image size: one low-resolution mask ([lowRes, lowRes] logits) upsampled
    /// bilinearly to ImageSize², cropped to the resized image's region, resized bilinearly to
    /// <paramref name="width"/> × <paramref name="height"/>. Threshold at 0 (<see cref="Binarize"/>) for the mask.
    /// </summary>
    /// <param name="lowRes">[lowResSize, lowResSize] logits, row-major.</param>
    /// <param name="lowResSize">Side of the low-resolution mask (256 for the public checkpoints).</param>
    /// <param name="width">Original image width.</param>
    /// <param name="height">Original image height.</param>
    public float[] PostprocessLogits(ReadOnlySpan<float> lowRes, int lowResSize, int width, int height)
    {
        var full = Resampling.ResizeBilinear(lowRes, lowResSize, lowResSize, ImageSize, ImageSize);
        var (w, h) = ResizedSize(width, height);
        var crop = new float[w * h];
        for (int y = 0; y < h; y++) full.AsSpan(y * ImageSize, w).CopyTo(crop.AsSpan(y * w, w));
        return Resampling.ResizeBilinear(crop, w, h, width, height);
    }

    /// <summary>Foreground where the logit is &gt; 0 (SAM's mask_threshold).</summary>
    public static BinaryMask Binarize(float[] logits, int width, int height)
    {
        var m = new bool[logits.Length];
        for (int i = 0; i < m.Length; i++) m[i] = logits[i] > 0f;
        return new BinaryMask(width, height, m);
    }
}
