namespace CycleQD.Segmentation.Imaging;

/// <summary>An 8-bit RGB image.</summary>
/// <param name="Width">Columns, in pixels.</param>
/// <param name="Height">Rows, in pixels.</param>
/// <param name="Pixels">[Height, Width, 3] row-major, R G B per pixel; owned by the image.</param>
public sealed record RgbImage(int Width, int Height, byte[] Pixels)
{
    /// <summary>Checks that the buffer holds Height × Width × 3 bytes.</summary>
    public RgbImage Validate()
    {
        if (Width <= 0 || Height <= 0) throw new ArgumentException($"image size {Width}×{Height} is empty");
        if (Pixels.Length != checked(Width * Height * 3)) throw new ArgumentException($"image {Width}×{Height} needs {Width * Height * 3} bytes, got {Pixels.Length}");
        return this;
    }
}
