using CycleQD.Testing;
using CycleQD.Segmentation.Imaging;

namespace CycleQD.Segmentation.Tests;

public class ImagingTests
{
    [Theory]
    [InlineData(1, 1, 0.5)]
    [InlineData(17, 9, 0.3)]
    [InlineData(31, 40, 0.05)]
    [InlineData(8, 8, 0.0)]
    public void DistanceTransform_MatchesBruteForce(int w, int h, double density)
    {
        var rng = new Random(w * 1000 + h);
        var feature = new bool[w * h];
        for (int i = 0; i < feature.Length; i++) feature[i] = rng.NextDouble() < density;
        var d2 = new double[w * h];
        var idx = new int[w * h];
        d2.AsSpan().Fill(double.NaN);
        idx.AsSpan().Fill(int.MinValue);
        DistanceTransform.Compute(feature, w, h, d2, idx);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                double best = double.PositiveInfinity;
                for (int j = 0; j < feature.Length; j++)
                    if (feature[j]) best = Math.Min(best, Sq(x - j % w) + Sq(y - j / w));
                int i = y * w + x;
                Assert.Equal(best, d2[i]);
                if (double.IsPositiveInfinity(best)) Assert.Equal(-1, idx[i]);
                else
                {
                    Assert.True(feature[idx[i]]);
                    Assert.Equal(best, Sq(x - idx[i] % w) + Sq(y - idx[i] / w));
                }
            }
    }

    private static double Sq(double v) => v * v;

    private static RgbImage Grey(params byte[] row) => new(row.Length, 1, row.SelectMany(v => new[] { v, v, v }).ToArray());

    [Fact]
    public void ResizeImage_Downscale_WidensTheTriangleFilter()
    {
        // 4 → 2: centres 1 and 3, support 2. Out 0: weights .75 .75 .25 on inputs 0..2 → 125/1.75 = 71.4;
        // out 1: weights .25 .75 .75 on inputs 1..3 → 366.25/1.75 = 209.3.
        var r = Resampling.ResizeBilinear(Grey(0, 100, 200, 255), 2, 1);
        Assert.Equal(new byte[] { 71, 71, 71, 209, 209, 209 }, r.Pixels);
    }

    [Fact]
    public void ResizeImage_Upscale_IsHalfPixelBilinear()
    {
        var r = Resampling.ResizeBilinear(Grey(0, 100), 4, 1);
        Assert.Equal(new byte[] { 0, 25, 75, 100 }, r.Pixels.Where((_, i) => i % 3 == 0).ToArray());
        var t = Resampling.ResizeBilinear(new RgbImage(1, 2, [0, 0, 0, 200, 200, 200]), 1, 4);
        Assert.Equal(new byte[] { 0, 50, 150, 200 }, t.Pixels.Where((_, i) => i % 3 == 0).ToArray());
    }

    [Fact]
    public void ResizeMap_MatchesTorchBilinear()
    {
        Assert.Equal(new float[] { 0, 25, 75, 100 }, Resampling.ResizeBilinear([0f, 100f], 2, 1, 4, 1));
        // 4 → 2 without antialiasing: source coordinates 0.5 and 2.5.
        Assert.Equal(new float[] { 50, 227.5f }, Resampling.ResizeBilinear([0f, 100f, 200f, 255f], 4, 1, 2, 1));
    }

    [Fact]
    public void ResizeMap_RandomInput_MatchesFloat64Reference()
    {
        var rng = new Random(5);
        int sw = 7, sh = 5, w = 13, h = 3;
        var src = Enumerable.Range(0, sw * sh).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var got = Resampling.ResizeBilinear(src, sw, sh, w, h);
        double num = 0, den = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                double sx = Math.Max((x + 0.5) * sw / w - 0.5, 0), sy = Math.Max((y + 0.5) * sh / h - 0.5, 0);
                int x0 = (int)Math.Floor(sx), y0 = (int)Math.Floor(sy);
                int x1 = Math.Min(x0 + 1, sw - 1), y1 = Math.Min(y0 + 1, sh - 1);
                double lx = sx - x0, ly = sy - y0;
                double v = (1 - ly) * ((1 - lx) * src[y0 * sw + x0] + lx * src[y0 * sw + x1]) + ly * ((1 - lx) * src[y1 * sw + x0] + lx * src[y1 * sw + x1]);
                num += Sq(got[y * w + x] - v); den += v * v;
            }
        Assert.True(Math.Sqrt(num / den) < 1e-6, $"relative error {Math.Sqrt(num / den)}");
    }

    [Fact]
    public void MaskPng_RoundTrips()
    {
        using var dir = new TempDir();
        var m = new BinaryMask(5, 3, [true, false, false, true, true, false, false, false, false, false, true, true, true, true, true]);
        ImageFiles.WriteMaskPng(dir.File("m.png"), m);
        var back = ImageFiles.ReadMask(dir.File("m.png"));
        Assert.Equal((5, 3), (back.Width, back.Height));
        Assert.Equal(m.Pixels, back.Pixels);
    }

    [Fact]
    public void ReadRgb_NotAnImage_NamesTheFile()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("x.png"), "not a png");
        var e = Assert.Throws<InvalidDataException>(() => ImageFiles.ReadRgb(dir.File("x.png")));
        Assert.Contains("x.png", e.Message);
    }
}
