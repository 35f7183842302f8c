using CycleQD.Segmentation.Imaging;

namespace CycleQD.Segmentation.Data;

/// <summary>Where a segmentation dataset lies and which of its samples to use.</summary>
public sealed record SegmentationDatasetOptions
{
    /// <summary>The dataset folder holding the image and mask folders.</summary>
    public required string DataDir { get; init; }

    /// <summary>A file listing the stems to use, one per line (blank lines and lines starting with # are skipped); null: every pair, sorted by stem.</summary>
    public string? SplitFile { get; init; }

    /// <summary>Image folder under <see cref="DataDir"/> (Kvasir-SEG and ISIC: images; COD10K: Image; CAMO: Images).</summary>
    public string ImagesFolder { get; init; } = "images";

    /// <summary>Mask folder under <see cref="DataDir"/> (Kvasir-SEG: masks; COD10K: GT_Object; CAMO: GT).</summary>
    public string MasksFolder { get; init; } = "masks";

    /// <summary>What a mask's file name adds to its image's stem (ISIC 2018: "_segmentation").</summary>
    public string MaskSuffix { get; init; } = "";

    /// <summary>Use only the first N samples (null: all).</summary>
    public int? Limit { get; init; }
}

/// <summary>One image and its ground-truth mask.</summary>
/// <param name="Id">The image's file stem.</param>
/// <param name="ImagePath">Absolute path of the image.</param>
/// <param name="MaskPath">Absolute path of the mask.</param>
public sealed record SegmentationSample(string Id, string ImagePath, string MaskPath);

/// <summary>
/// Image/mask folder pairs as segmentation datasets ship them (Kvasir-SEG, ISIC, COD10K, CAMO): an
/// image folder and a mask folder whose files match by stem. Opening lists and matches the files;
/// pixels are decoded on <see cref="Load"/>. Every inconsistency (an image without mask or the other
/// way round, two files with one stem, a split entry that names no pair, sizes that differ) is an
/// <see cref="InvalidDataException"/> that names the file at fault.
/// </summary>
public sealed class SegmentationDataset
{
    private static readonly string[] Extensions = [".jpg", ".jpeg", ".png", ".bmp", ".webp"];

    /// <summary>The dataset folder (absolute).</summary>
    public string DataDir { get; }

    /// <summary>The samples in use, in split-file order (or sorted by stem).</summary>
    public IReadOnlyList<SegmentationSample> Samples { get; }

    private SegmentationDataset(string dataDir, IReadOnlyList<SegmentationSample> samples)
    {
        DataDir = dataDir;
        Samples = samples;
    }

    /// <summary>Lists and matches the files; decodes nothing.</summary>
    public static SegmentationDataset Open(SegmentationDatasetOptions options)
    {
        string root = Path.GetFullPath(options.DataDir);
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"dataset folder not found: {root}");
        if (options.Limit is <= 0) throw new ArgumentException($"limit must be positive (got {options.Limit})");
        var images = ListByStem(Path.Combine(root, options.ImagesFolder), "", "image");
        var masks = ListByStem(Path.Combine(root, options.MasksFolder), options.MaskSuffix, "mask");
        foreach (var (stem, path) in images)
            if (!masks.ContainsKey(stem))
                throw new InvalidDataException($"image {path} has no mask: expected {stem}{options.MaskSuffix}.<{string.Join("|", Extensions.Select(e => e[1..]))}> in {Path.Combine(root, options.MasksFolder)}");
        foreach (var (stem, path) in masks)
            if (!images.ContainsKey(stem))
                throw new InvalidDataException($"mask {path} has no image: expected {stem}.<{string.Join("|", Extensions.Select(e => e[1..]))}> in {Path.Combine(root, options.ImagesFolder)}");
        if (images.Count == 0) throw new InvalidDataException($"no images in {Path.Combine(root, options.ImagesFolder)}");

        IEnumerable<string> stems;
        if (options.SplitFile is { } split)
        {
            string splitPath = Path.GetFullPath(split);
            if (!File.Exists(splitPath)) throw new FileNotFoundException($"split file not found: {splitPath}", splitPath);
            var list = new List<string>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            int line = 0;
            foreach (string raw in File.ReadLines(splitPath))
            {
                line++;
                string s = raw.Trim();
                if (s.Length == 0 || s.StartsWith('#')) continue;
                // Allow "name.jpg" as well as the bare stem.
                if (!images.ContainsKey(s) && Extensions.Contains(Path.GetExtension(s).ToLowerInvariant())) s = Path.GetFileNameWithoutExtension(s);
                if (!images.ContainsKey(s)) throw new InvalidDataException($"{splitPath}: line {line}: '{raw.Trim()}' is not an image/mask pair in {root}");
                if (!seen.Add(s)) throw new InvalidDataException($"{splitPath}: line {line}: '{s}' is listed twice");
                list.Add(s);
            }
            if (list.Count == 0) throw new InvalidDataException($"{splitPath}: lists no samples");
            stems = list;
        }
        else stems = images.Keys.Order(StringComparer.Ordinal);
        if (options.Limit is { } limit) stems = stems.Take(limit);
        return new SegmentationDataset(root, stems.Select(s => new SegmentationSample(s, images[s], masks[s])).ToList());
    }

    /// <summary>Decodes sample <paramref name="index"/>: the RGB image and its binarised mask, checked to be the same size.</summary>
    public (RgbImage Image, BinaryMask Mask) Load(int index)
    {
        var s = Samples[index];
        var image = ImageFiles.ReadRgb(s.ImagePath);
        var mask = ImageFiles.ReadMask(s.MaskPath);
        if (image.Width != mask.Width || image.Height != mask.Height)
            throw new InvalidDataException($"mask {s.MaskPath} is {mask.Width}×{mask.Height} but its image {s.ImagePath} is {image.Width}×{image.Height}");
        return (image, mask);
    }

    private static Dictionary<string, string> ListByStem(string folder, string suffix, string what)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{what} folder not found: {folder}");
        var byStem = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string path in Directory.EnumerateFiles(folder))
        {
            if (!Extensions.Contains(Path.GetExtension(path).ToLowerInvariant())) continue;
            string stem = Path.GetFileNameWithoutExtension(path);
            if (suffix.Length > 0)
            {
                if (!stem.EndsWith(suffix, StringComparison.Ordinal))
                    throw new InvalidDataException($"{what} {path} does not end in '{suffix}' as the dataset's mask suffix says");
                stem = stem[..^suffix.Length];
            }
            if (byStem.TryGetValue(stem, out string? other))
                throw new InvalidDataException($"{what}s {other} and {path} have the same stem '{stem}'");
            byStem[stem] = path;
        }
        return byStem;
    }
}
