using CycleQD.Segmentation.Imaging;
using SkiaSharp;

namespace CycleQD.Segmentation.Tests;

/// <summary>Draws small image/mask folder pairs: an ellipse of one colour on a noisy background.</summary>
internal static class SyntheticPairs
{
    public static void WriteRgbPng(string path, RgbImage image)
    {
        using var bmp = new SKBitmap(new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var span = bmp.GetPixelSpan();
        for (int y = 0; y < image.Height; y++)
            for (int x = 0; x < image.Width; x++)
                for (int c = 0; c < 4; c++)
                    span[y * bmp.RowBytes + x * 4 + c] = c == 3 ? (byte)255 : image.Pixels[(y * image.Width + x) * 3 + c];
        using var data = bmp.Encode(SKEncodedImageFormat.Png, 100);
        using var fs = File.Create(path);
        data.SaveTo(fs);
    }

    /// <summary>Writes <paramref name="count"/> pairs named s0, s1, … into dir/images and dir/masks.</summary>
    public static void Write(string dir, int count, int width = 40, int height = 30, int seed = 1)
    {
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        Directory.CreateDirectory(Path.Combine(dir, "masks"));
        var rng = new Random(seed);
        for (int k = 0; k < count; k++)
        {
            double cx = width * (0.3 + 0.4 * rng.NextDouble()), cy = height * (0.3 + 0.4 * rng.NextDouble());
            double rx = width * (0.1 + 0.15 * rng.NextDouble()), ry = height * (0.1 + 0.15 * rng.NextDouble());
            var px = new byte[width * height * 3];
            var m = new bool[width * height];
            for (int y = 0; y < height; y++)
                for (int x = 0; x < width; x++)
                {
                    bool inside = Math.Pow((x - cx) / rx, 2) + Math.Pow((y - cy) / ry, 2) <= 1;
                    m[y * width + x] = inside;
                    for (int c = 0; c < 3; c++)
                        px[(y * width + x) * 3 + c] = inside ? (byte)(200 - 60 * c) : (byte)rng.Next(0, 90);
                }
            WriteRgbPng(Path.Combine(dir, "images", $"s{k}.png"), new RgbImage(width, height, px));
            ImageFiles.WriteMaskPng(Path.Combine(dir, "masks", $"s{k}.png"), new BinaryMask(width, height, m));
        }
    }
}
