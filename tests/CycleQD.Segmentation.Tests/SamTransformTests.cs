using CycleQD.Segmentation.Imaging;
using CycleQD.Segmentation.Sam;

namespace CycleQD.Segmentation.Tests;

public class SamTransformTests
{
    [Fact]
    public void ResizedSize_ScalesTheLongestSide()
    {
        var t = new SamImageTransform(1024);
        Assert.Equal((1024, 871), t.ResizedSize(622, 529)); // 529 · 1024/622 = 870.9 → 871
        Assert.Equal((768, 1024), t.ResizedSize(600, 800));
        Assert.Equal((64, 54), new SamImageTransform(64).ResizedSize(622, 529)); // 54.43 → 54
    }

    [Fact]
    public void Preprocess_NormalisesInsideAndZeroPadsOutside()
    {
        var t = new SamImageTransform(8);
        var img = new RgbImage(4, 2, Enumerable.Repeat((byte)200, 4 * 2 * 3).ToArray()); // → 8 × 4
        var chw = t.Preprocess(img);
        Assert.Equal(3 * 64, chw.Length);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++)
                {
                    float want = y < 4 ? (200 - SamImageTransform.PixelMean[c]) / SamImageTransform.PixelStd[c] : 0f;
                    Assert.Equal(want, chw[c * 64 + y * 8 + x], 5);
                }
    }

    [Fact]
    public void TransformCoords_ScalesEachAxisByItsOwnFactor()
    {
        var t = new SamImageTransform(64);
        var o = t.TransformCoords([622f, 529f, 311f, 0f], 622, 529);
        Assert.Equal(64f, o[0], 4);
        Assert.Equal(54f, o[1], 4);
        Assert.Equal(32f, o[2], 4);
    }

    [Fact]
    public void Postprocess_MapsLowResLogitsBackToTheOriginalFrame()
    {
        // Image 8 wide, 4 tall, ImageSize 8: the resized image fills rows 0–3 of the square. Low-res 4×4 logits
        // positive in the left half only: after upsampling and cropping the mask is the left half of the image.
        var t = new SamImageTransform(8);
        var low = new float[16];
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) low[y * 4 + x] = x < 2 ? 3f : -3f;
        var logits = t.PostprocessLogits(low, 4, 8, 4);
        var mask = SamImageTransform.Binarize(logits, 8, 4);
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 8; x++) Assert.Equal(x < 4, mask.Pixels[y * 8 + x]);
        // The padding (rows 4–7 of the square) is cut off: negative logits there do not reach the output.
        var padded = new float[16];
        for (int i = 0; i < 16; i++) padded[i] = i < 8 ? 1f : -50f;
        Assert.All(SamImageTransform.Binarize(t.PostprocessLogits(padded, 4, 8, 2), 8, 2).Pixels, Assert.True);
    }

    [Fact]
    public void BoundingBox_IsTheTightBoxOfTheForeground()
    {
        var m = new bool[6 * 5];
        m[1 * 6 + 2] = m[3 * 6 + 4] = m[2 * 6 + 1] = true;
        Assert.Equal(new float[] { 1, 1, 4, 3 }, GroundTruthPrompts.BoundingBox(new BinaryMask(6, 5, m)));
    }

    [Fact]
    public void CentrePoint_IsTheInteriorPixelFarthestFromTheBackground()
    {
        // Rectangle of columns 1–9, rows 2–6 in a 12 × 10 image: distance 3 is reached on row 4 for columns 3–7;
        // ties go to the first in row-major order.
        var m = new bool[12 * 10];
        for (int y = 2; y <= 6; y++)
            for (int x = 1; x <= 9; x++) m[y * 12 + x] = true;
        Assert.Equal(new float[] { 3, 4 }, GroundTruthPrompts.CentrePoint(new BinaryMask(12, 10, m)));
        // The image border counts as background: a full mask's centre is the image centre.
        var full = Enumerable.Repeat(true, 5 * 5).ToArray();
        Assert.Equal(new float[] { 2, 2 }, GroundTruthPrompts.CentrePoint(new BinaryMask(5, 5, full)));
    }

    [Fact]
    public void CentrePoint_OfARing_LiesOnTheRing()
    {
        var m = new bool[21 * 21];
        for (int y = 0; y < 21; y++)
            for (int x = 0; x < 21; x++)
            {
                double r = Math.Sqrt((x - 10) * (x - 10) + (y - 10) * (y - 10));
                m[y * 21 + x] = r >= 5 && r <= 9;
            }
        var p = GroundTruthPrompts.CentrePoint(new BinaryMask(21, 21, m));
        Assert.True(m[(int)p[1] * 21 + (int)p[0]]);
    }

    [Fact]
    public void Prompts_EmptyMask_Throws()
    {
        var empty = new BinaryMask(3, 3, new bool[9]);
        Assert.Throws<ArgumentException>(() => GroundTruthPrompts.BoundingBox(empty));
        Assert.Throws<ArgumentException>(() => GroundTruthPrompts.CentrePoint(empty));
    }
}
