using CycleQD.Testing;
using CycleQD.Segmentation.Data;
using CycleQD.Segmentation.Imaging;

namespace CycleQD.Segmentation.Tests;

public class DatasetTests
{
    [Fact]
    public void Kvasir_FivePairs_LoadWithMatchingSizesAndBinaryMasks()
    {
        string dir = TestPaths.RequireSharedData("segmentation", "kvasir_seg");
        var ds = SegmentationDataset.Open(new SegmentationDatasetOptions { DataDir = dir });
        Assert.Equal(5, ds.Samples.Count);
        Assert.Equal(ds.Samples.Select(s => s.Id).Order(StringComparer.Ordinal), ds.Samples.Select(s => s.Id));
        for (int i = 0; i < ds.Samples.Count; i++)
        {
            var (image, mask) = ds.Load(i);
            Assert.Equal((image.Width, image.Height), (mask.Width, mask.Height));
            double fg = (double)mask.ForegroundCount / mask.Pixels.Length;
            Assert.InRange(fg, 0.005, 0.95); // a polyp, not an empty or full frame
        }
    }

    [Fact]
    public void SplitFile_SelectsAndOrdersStems_AndRejectsUnknownOnes()
    {
        using var dir = new TempDir();
        SyntheticPairs.Write(dir.Path, 4);
        File.WriteAllLines(dir.File("split.txt"), ["# valid", "s3", "", "s1.png"]);
        var ds = SegmentationDataset.Open(new SegmentationDatasetOptions { DataDir = dir.Path, SplitFile = dir.File("split.txt") });
        Assert.Equal(["s3", "s1"], ds.Samples.Select(s => s.Id));
        File.WriteAllLines(dir.File("bad.txt"), ["s0", "s9"]);
        var e = Assert.Throws<InvalidDataException>(() => SegmentationDataset.Open(new SegmentationDatasetOptions { DataDir = dir.Path, SplitFile = dir.File("bad.txt") }));
        Assert.Contains("bad.txt: line 2: 's9'", e.Message);
        File.WriteAllLines(dir.File("twice.txt"), ["s0", "s0"]);
        e = Assert.Throws<InvalidDataException>(() => SegmentationDataset.Open(new SegmentationDatasetOptions { DataDir = dir.Path, SplitFile = dir.File("twice.txt") }));
        Assert.Contains("listed twice", e.Message);
    }

    [Fact]
    public void ImageWithoutMask_NamesTheImage()
    {
        using var dir = new TempDir();
        SyntheticPairs.Write(dir.Path, 2);
        File.Delete(Path.Combine(dir.Path, "masks", "s1.png"));
        var e = Assert.Throws<InvalidDataException>(() => SegmentationDataset.Open(new SegmentationDatasetOptions { DataDir = dir.Path }));
        Assert.Contains(Path.Combine(dir.Path, "images", "s1.png"), e.Message);
        Assert.Contains("has no mask", e.Message);
    }

    [Fact]
    public void MaskWithoutImage_NamesTheMask()
    {
        using var dir = new TempDir();
        SyntheticPairs.Write(dir.Path, 2);
        File.Copy(Path.Combine(dir.Path, "masks", "s1.png"), Path.Combine(dir.Path, "masks", "extra.png"));
        var e = Assert.Throws<InvalidDataException>(() => SegmentationDataset.Open(new SegmentationDatasetOptions { DataDir = dir.Path }));
        Assert.Contains("extra.png has no image", e.Message);
    }

    [Fact]
    public void SizeMismatch_NamesBothFiles()
    {
        using var dir = new TempDir();
        SyntheticPairs.Write(dir.Path, 1);
        ImageFiles.WriteMaskPng(Path.Combine(dir.Path, "masks", "s0.png"), new BinaryMask(3, 2, new bool[6]));
        var ds = SegmentationDataset.Open(new SegmentationDatasetOptions { DataDir = dir.Path });
        var e = Assert.Throws<InvalidDataException>(() => ds.Load(0));
        Assert.Contains("s0.png is 3×2 but its image", e.Message);
        Assert.Contains("40×30", e.Message);
    }

    [Fact]
    public void TwoFilesWithOneStem_AreRejected()
    {
        using var dir = new TempDir();
        SyntheticPairs.Write(dir.Path, 1);
        File.Copy(Path.Combine(dir.Path, "images", "s0.png"), Path.Combine(dir.Path, "images", "s0.jpg"));
        var e = Assert.Throws<InvalidDataException>(() => SegmentationDataset.Open(new SegmentationDatasetOptions { DataDir = dir.Path }));
        Assert.Contains("same stem 's0'", e.Message);
    }

    [Fact]
    public void MaskSuffix_MatchesIsicNames()
    {
        using var dir = new TempDir();
        SyntheticPairs.Write(dir.Path, 2);
        foreach (var f in Directory.GetFiles(Path.Combine(dir.Path, "masks")))
            File.Move(f, Path.Combine(Path.GetDirectoryName(f)!, Path.GetFileNameWithoutExtension(f) + "_segmentation.png"));
        var ds = SegmentationDataset.Open(new SegmentationDatasetOptions { DataDir = dir.Path, MaskSuffix = "_segmentation" });
        Assert.Equal(["s0", "s1"], ds.Samples.Select(s => s.Id));
        Assert.Throws<InvalidDataException>(() => SegmentationDataset.Open(new SegmentationDatasetOptions { DataDir = dir.Path }));
    }

    [Fact]
    public void MissingFolder_NamesIt()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("images"));
        var e = Assert.Throws<DirectoryNotFoundException>(() => SegmentationDataset.Open(new SegmentationDatasetOptions { DataDir = dir.Path }));
        Assert.Contains(dir.File("masks"), e.Message);
    }
}
