using SkiaSharp;

namespace CycleQD.Segmentation.Imaging;

/// <summary>Decodes image files (JPEG, PNG, BMP, WebP, GIF: what SkiaSharp reads) into 8-bit RGB or binary masks.</summary>
public static class ImageFiles
{
    /// <summary>The file's pixels as RGB (alpha dropped, no colour-space conversion).</summary>
    /// <exception cref="InvalidDataException">The file is not a complete image SkiaSharp can decode (message names it).</exception>
    public static RgbImage ReadRgb(string path)
    {
        var (w, h, rgba) = ReadRgba(path);
        var rgb = new byte[w * h * 3];
        for (int i = 0, j = 0; i < rgba.Length; i += 4, j += 3)
        {
            rgb[j] = rgba[i];
            rgb[j + 1] = rgba[i + 1];
            rgb[j + 2] = rgba[i + 2];
        }
        return new RgbImage(w, h, rgb);
    }

    /// <summary>
    /// A ground-truth mask: foreground where the grey level (ITU-R 601 luma, 0.299 R + 0.587 G + 0.114 B,
    /// as Pillow's convert("L")) is ≥ 128. Binarising at 128 absorbs JPEG ringing in masks saved as JPEG
    /// (Kvasir-SEG) and treats 0/255 PNG masks (ISIC, COD10K, CAMO) exactly.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not a complete image SkiaSharp can decode (message names it).</exception>
    public static BinaryMask ReadMask(string path)
    {
        var (w, h, rgba) = ReadRgba(path);
        var mask = new bool[w * h];
        for (int i = 0; i < mask.Length; i++)
        {
            double luma = 0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2];
            mask[i] = luma >= 128;
        }
        return new BinaryMask(w, h, mask);
    }

    /// <summary>Image width and height from the header alone.</summary>
    public static (int Width, int Height) ReadSize(string path)
    {
        using var codec = Open(path);
        return (codec.Info.Width, codec.Info.Height);
    }

    /// <summary>Writes a mask as an 8-bit PNG (foreground 255), e.g. for predicted masks.</summary>
    public static void WriteMaskPng(string path, BinaryMask mask)
    {
        var info = new SKImageInfo(mask.Width, mask.Height, SKColorType.Gray8, SKAlphaType.Opaque);
        using var bmp = new SKBitmap(info);
        var span = bmp.GetPixelSpan();
        for (int y = 0; y < mask.Height; y++)
            for (int x = 0; x < mask.Width; x++)
                span[y * bmp.RowBytes + x] = mask.Pixels[y * mask.Width + x] ? (byte)255 : (byte)0;
        using var data = bmp.Encode(SKEncodedImageFormat.Png, 100) ?? throw new IOException($"{path}: PNG encoding failed");
        using var fs = File.Create(path);
        data.SaveTo(fs);
    }

    private static SKCodec Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"image not found: {path}", path);
        return SKCodec.Create(path, out var result) ?? throw new InvalidDataException($"{path}: not an image this build can decode ({result})");
    }

    private static (int Width, int Height, byte[] Rgba) ReadRgba(string path)
    {
        using var codec = Open(path);
        int w = codec.Info.Width, h = codec.Info.Height;
        var info = new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[w * h * 4];
        SKCodecResult r;
        unsafe
        {
            fixed (byte* p = rgba) r = codec.GetPixels(info, (IntPtr)p);
        }
        if (r != SKCodecResult.Success)
            throw new InvalidDataException($"{path}: decoding failed ({r}){(r == SKCodecResult.IncompleteInput ? ": the file is truncated" : "")}");
        return (w, h, rgba);
    }
}
