namespace CycleQD.Segmentation.Metrics;

/// <summary>Argument checks shared by the metrics: a prediction map in [0, 1] and a ground truth of one size.</summary>
internal static class MapCheck
{
    public static void SameSize(ReadOnlySpan<float> prediction, ReadOnlySpan<bool> truth, int width, int height)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"map size {width}×{height} is empty");
        int n = checked(width * height);
        if (prediction.Length != n || truth.Length != n)
            throw new ArgumentException($"prediction ({prediction.Length} pixels) and ground truth ({truth.Length} pixels) must both hold {width}×{height} = {n} pixels");
    }
}
