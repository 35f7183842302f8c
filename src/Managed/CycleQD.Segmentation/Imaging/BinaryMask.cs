namespace CycleQD.Segmentation.Imaging;

/// <summary>A binary mask (true: foreground).</summary>
/// <param name="Width">Columns, in pixels.</param>
/// <param name="Height">Rows, in pixels.</param>
/// <param name="Pixels">[Height, Width] row-major; owned by the mask.</param>
public sealed record BinaryMask(int Width, int Height, bool[] Pixels)
{
    /// <summary>Number of foreground pixels.</summary>
    public int ForegroundCount
    {
        get
        {
            int n = 0;
            foreach (bool b in Pixels) if (b) n++;
            return n;
        }
    }

    /// <summary>The mask as a 0/1 map, the form the metrics take for a prediction.</summary>
    public float[] ToFloat()
    {
        var f = new float[Pixels.Length];
        for (int i = 0; i < f.Length; i++) f[i] = Pixels[i] ? 1f : 0f;
        return f;
    }
}
