namespace CycleQD.Segmentation.Metrics;

/// <summary>The metric a segmentation task reports as its score.</summary>
public enum SegmentationMetric
{
    /// <summary>Mean intersection over union.</summary>
    Iou,
    /// <summary>Mean Dice coefficient.</summary>
    Dice,
    /// <summary>1 − mean absolute error (so that higher is better, as every score).</summary>
    Mae,
    /// <summary>Mean S-measure, α = 0.5.</summary>
    SMeasure,
    /// <summary>Mean of the per-image mean E-measure.</summary>
    EMeasure,
    /// <summary>Mean weighted F-measure, β² = 1.</summary>
    WeightedF,
}

/// <summary>Names of <see cref="SegmentationMetric"/> as configuration and reports spell them.</summary>
public static class SegmentationMetricNames
{
    /// <summary>iou, dice, mae, s_measure, e_measure, weighted_f.</summary>
    public static string Name(this SegmentationMetric m) => m switch
    {
        SegmentationMetric.Iou => "iou",
        SegmentationMetric.Dice => "dice",
        SegmentationMetric.Mae => "mae",
        SegmentationMetric.SMeasure => "s_measure",
        SegmentationMetric.EMeasure => "e_measure",
        SegmentationMetric.WeightedF => "weighted_f",
        _ => throw new ArgumentOutOfRangeException(nameof(m)),
    };

    /// <summary>All metrics, in report order.</summary>
    public static IReadOnlyList<SegmentationMetric> All { get; } = Enum.GetValues<SegmentationMetric>();

    /// <summary>Parses a name; throws an <see cref="ArgumentException"/> listing the known ones.</summary>
    public static SegmentationMetric Parse(string name) =>
        All.FirstOrDefault(m => m.Name() == name, (SegmentationMetric)(-1)) is var m && (int)m >= 0 ? m
            : throw new ArgumentException($"unknown segmentation metric '{name}' (known: {string.Join(", ", All.Select(x => x.Name()))})");
}

/// <summary>The six metrics of one prediction against its ground truth.</summary>
/// <param name="Iou">Intersection over union.</param>
/// <param name="Dice">Dice coefficient.</param>
/// <param name="Mae">Mean absolute error (lower is better).</param>
/// <param name="SMeasure">S-measure, α = 0.5.</param>
/// <param name="EMeasure">Mean E-measure.</param>
/// <param name="WeightedF">Weighted F-measure, β² = 1.</param>
public sealed record SegmentationScores(double Iou, double Dice, double Mae, double SMeasure, double EMeasure, double WeightedF)
{
    /// <summary>All six for one [height, width] prediction map in [0, 1] and its ground truth.</summary>
    public static SegmentationScores Compute(ReadOnlySpan<float> prediction, ReadOnlySpan<bool> truth, int width, int height) => new(
        Overlap.Iou(prediction, truth, width, height),
        Overlap.Dice(prediction, truth, width, height),
        MeanAbsoluteError.Compute(prediction, truth, width, height),
        StructureMeasure.Compute(prediction, truth, width, height),
        EnhancedAlignmentMeasure.Mean(prediction, truth, width, height),
        WeightedFMeasure.Compute(prediction, truth, width, height));

    /// <summary>The value of <paramref name="metric"/> as a score (higher is better): MAE becomes 1 − MAE.</summary>
    public double Score(SegmentationMetric metric) => metric switch
    {
        SegmentationMetric.Iou => Iou,
        SegmentationMetric.Dice => Dice,
        SegmentationMetric.Mae => 1 - Mae,
        SegmentationMetric.SMeasure => SMeasure,
        SegmentationMetric.EMeasure => EMeasure,
        SegmentationMetric.WeightedF => WeightedF,
        _ => throw new ArgumentOutOfRangeException(nameof(metric)),
    };

    /// <summary>The raw value of <paramref name="metric"/> (MAE as the error itself).</summary>
    public double Value(SegmentationMetric metric) => metric == SegmentationMetric.Mae ? Mae : Score(metric);

    /// <summary>Per-metric means over images (the datasets' convention: each image weighs the same).</summary>
    public static SegmentationScores Mean(IReadOnlyList<SegmentationScores> perImage)
    {
        if (perImage.Count == 0) throw new ArgumentException("no images to average");
        return new(perImage.Average(s => s.Iou), perImage.Average(s => s.Dice), perImage.Average(s => s.Mae),
            perImage.Average(s => s.SMeasure), perImage.Average(s => s.EMeasure), perImage.Average(s => s.WeightedF));
    }
}
