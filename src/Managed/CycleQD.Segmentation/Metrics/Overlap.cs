namespace CycleQD.Segmentation.Metrics;

/// <summary>
/// Region overlap of one binary prediction with its ground truth. The prediction map is
/// binarised at 0.5 (SAM's masks are already 0/1). When both masks are empty the two agree
/// perfectly and both scores are 1; this convention is stated because definitions in use differ.
/// </summary>
public static class Overlap
{
    /// <summary>Intersection over union (Jaccard index) |P ∩ G| / |P ∪ G|, in [0, 1].</summary>
    /// <param name="prediction">[height, width] row-major, values in [0, 1].</param>
    /// <param name="truth">[height, width] row-major.</param>
    /// <param name="width">Columns.</param>
    /// <param name="height">Rows.</param>
    public static double Iou(ReadOnlySpan<float> prediction, ReadOnlySpan<bool> truth, int width, int height)
    {
        Count(prediction, truth, width, height, out long inter, out long pred, out long gt);
        long union = pred + gt - inter;
        return union == 0 ? 1.0 : (double)inter / union;
    }

    /// <summary>Dice coefficient (F1 of the pixels) 2 |P ∩ G| / (|P| + |G|), in [0, 1].</summary>
    /// <param name="prediction">[height, width] row-major, values in [0, 1].</param>
    /// <param name="truth">[height, width] row-major.</param>
    /// <param name="width">Columns.</param>
    /// <param name="height">Rows.</param>
    public static double Dice(ReadOnlySpan<float> prediction, ReadOnlySpan<bool> truth, int width, int height)
    {
        Count(prediction, truth, width, height, out long inter, out long pred, out long gt);
        return pred + gt == 0 ? 1.0 : 2.0 * inter / (pred + gt);
    }

    private static void Count(ReadOnlySpan<float> prediction, ReadOnlySpan<bool> truth, int width, int height, out long inter, out long pred, out long gt)
    {
        MapCheck.SameSize(prediction, truth, width, height);
        inter = 0; pred = 0; gt = 0;
        for (int i = 0; i < truth.Length; i++)
        {
            bool p = prediction[i] >= 0.5f;
            if (p) pred++;
            if (truth[i]) gt++;
            if (p && truth[i]) inter++;
        }
    }
}
