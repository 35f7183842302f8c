namespace CycleQD.Segmentation.Metrics;

/// <summary>
/// Mean absolute error between a prediction map and the binary ground truth (Perazzi et al.,
/// "Saliency filters", CVPR 2012): (1 / (W·H)) Σ |P(x, y) − G(x, y)|, in [0, 1], lower is better.
/// </summary>
public static class MeanAbsoluteError
{
    /// <param name="prediction">[height, width] row-major, values in [0, 1].</param>
    /// <param name="truth">[height, width] row-major.</param>
    /// <param name="width">Columns.</param>
    /// <param name="height">Rows.</param>
    public static double Compute(ReadOnlySpan<float> prediction, ReadOnlySpan<bool> truth, int width, int height)
    {
        MapCheck.SameSize(prediction, truth, width, height);
        double sum = 0;
        for (int i = 0; i < truth.Length; i++) sum += Math.Abs(prediction[i] - (truth[i] ? 1.0 : 0.0));
        return sum / truth.Length;
    }
}
