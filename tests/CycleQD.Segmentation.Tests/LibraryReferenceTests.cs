using System.Runtime.InteropServices;
using CycleQD.Segmentation.Imaging;
using CycleQD.Segmentation.Sam;
using CycleQD.Testing;

namespace CycleQD.Segmentation.Tests;

/// <summary>The re-implemented resizes and distance transform against outputs of Pillow, PyTorch and SciPy (TestData/reference/README.md).</summary>
public class LibraryReferenceTests
{
    private static string Ref(string name) => Path.Combine(TestPaths.RepoRoot, "tests", "CycleQD.Segmentation.Tests", "TestData", "reference", name);

    [Fact]
    public void ImageResize_MatchesPillowBilinear_WithinOneGreyLevel()
    {
        var image = new RgbImage(97, 73, File.ReadAllBytes(Ref("image97x73.rgb"))).Validate();
        var want = File.ReadAllBytes(Ref("pillow_bilinear_64x48.rgb"));
        var got = Resampling.ResizeBilinear(image, 64, 48).Pixels;
        Assert.Equal(want.Length, got.Length);
        int differ = 0;
        for (int i = 0; i < got.Length; i++)
        {
            Assert.InRange(got[i] - want[i], -1, 1); // Pillow's fixed-point weights vs doubles
            if (got[i] != want[i]) differ++;
        }
        Assert.True(differ <= got.Length / 100, $"{differ} of {got.Length} values differ from Pillow");
    }

    [Fact]
    public void MaskPostprocess_MatchesTorchInterpolate()
    {
        var logits = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(Ref("logits32.f32"))).ToArray();
        var want = MemoryMarshal.Cast<byte, double>(File.ReadAllBytes(Ref("torch_postprocess_97x73.f64"))).ToArray();
        var got = new SamImageTransform(128).PostprocessLogits(logits, 32, 97, 73);
        Assert.Equal(want.Length, got.Length);
        double num = 0, den = 0;
        for (int i = 0; i < got.Length; i++)
        {
            num += (got[i] - want[i]) * (got[i] - want[i]);
            den += want[i] * want[i];
            Assert.Equal(want[i] > 0, got[i] > 0);
        }
        Assert.True(Math.Sqrt(num / den) < 1e-6, $"relative error {Math.Sqrt(num / den)}");
    }

    [Fact]
    public void DistanceTransform_MatchesScipyEdt()
    {
        var mask = File.ReadAllBytes(Ref("mask50x40.u8")).Select(b => b != 0).ToArray();
        var want = MemoryMarshal.Cast<byte, double>(File.ReadAllBytes(Ref("scipy_edt_sq_50x40.f64"))).ToArray();
        var d2 = new double[mask.Length];
        var idx = new int[mask.Length];
        DistanceTransform.Compute(mask, 50, 40, d2, idx);
        for (int i = 0; i < d2.Length; i++) Assert.Equal(want[i], d2[i], 1e-9);
    }
}
