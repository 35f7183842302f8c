using CycleQD.Segmentation.Metrics;

namespace CycleQD.Segmentation.Tests;

public class MetricsTests
{
    private static bool[] B(params int[] v) => v.Select(x => x != 0).ToArray();

    [Fact]
    public void Overlap_HandCase_MatchesCounts()
    {
        // G = 1 1 0 / 0 1 0, P = 1 0 0 / 1 1 0: |P∩G| = 2, |P| = |G| = 3, |P∪G| = 4.
        float[] p = [1, 0, 0, 1, 1, 0];
        var g = B(1, 1, 0, 0, 1, 0);
        Assert.Equal(0.5, Overlap.Iou(p, g, 3, 2), 15);
        Assert.Equal(2.0 / 3.0, Overlap.Dice(p, g, 3, 2), 15);
    }

    [Fact]
    public void Overlap_EmptyMasks_FollowTheStatedConventions()
    {
        Assert.Equal(1.0, Overlap.Iou([0, 0], B(0, 0), 2, 1));
        Assert.Equal(1.0, Overlap.Dice([0, 0], B(0, 0), 2, 1));
        Assert.Equal(0.0, Overlap.Iou([1, 0], B(0, 0), 2, 1));
        Assert.Equal(0.0, Overlap.Dice([0, 0], B(1, 0), 2, 1));
    }

    [Fact]
    public void Overlap_GreyPrediction_IsBinarisedAtHalf()
    {
        Assert.Equal(1.0 / 3.0, Overlap.Iou([0.5f, 0.7f, 0.49f], B(1, 0, 1), 3, 1), 15); // P = {0, 1}, G = {0, 2}: 1 of 3
    }

    [Fact]
    public void MeanAbsoluteError_HandCase()
    {
        // |0.2 − 0| + |0.8 − 1| + |1 − 1| + |0 − 1| = 1.4 over 4 pixels.
        Assert.Equal(0.35, MeanAbsoluteError.Compute([0.2f, 0.8f, 1f, 0f], B(0, 1, 1, 1), 2, 2), 6);
    }

    [Fact]
    public void SMeasure_SpecialCases_AreMeansOfThePrediction()
    {
        Assert.Equal(0.75, StructureMeasure.Compute([0.5f, 0.5f, 0f, 0f], B(0, 0, 0, 0), 2, 2), 12);
        Assert.Equal(0.25, StructureMeasure.Compute([0.5f, 0.5f, 0f, 0f], B(1, 1, 1, 1), 2, 2), 12);
    }

    [Fact]
    public void SMeasure_PerfectPrediction_IsOne()
    {
        var g = B(0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0);
        Assert.Equal(1.0, StructureMeasure.Compute(g.Select(x => x ? 1f : 0f).ToArray(), g, 5, 4), 12);
    }

    [Fact]
    public void SMeasure_FiveByFiveCase_MatchesTheDefinitionWorkedOut()
    {
        // G: the 2×2 block at rows 1–2, columns 1–2. Centroid (1.5, 1.5) rounds half to even to 2, +1 → split at 3.
        // Worked out term by term from the definition: S_o = 0.9294016384775973, S_r = 0.5775269074384115.
        var g = new bool[25];
        foreach (int i in new[] { 6, 7, 11, 12 }) g[i] = true;
        float[] p =
        [
            0, 0, 0, 0, 0,
            0, 1, 0.5f, 0, 0,
            0, 1, 1, 0.5f, 0,
            0, 0, 0, 0, 0,
            0, 0, 0, 0.25f, 0,
        ];
        Assert.Equal(0.7534642729580043, StructureMeasure.Compute(p, g, 5, 5), 12);
    }

    [Fact]
    public void EMeasure_BinaryHandCase()
    {
        // G = 1 0 0 0, FM = 1 1 0 0: means 0.25 and 0.5. TP: ξ = 12/13 → (25/13)²/4 = 625/676;
        // FP: ξ = −0.8 → 0.01; TN (two pixels): ξ = 0.8 → 0.81. E = (625/676 + 0.01 + 1.62) / 4.
        double expected = (625.0 / 676 + 0.01 + 1.62) / 4;
        Assert.Equal(expected, EnhancedAlignmentMeasure.Binary(B(1, 1, 0, 0), B(1, 0, 0, 0), 2, 2), 12);
    }

    [Fact]
    public void EMeasure_MeanOfBinaryMap_IncludesTheAllForegroundThreshold()
    {
        // Thresholds 1…255 give FM itself; threshold 0 marks every pixel foreground: ξ = 0 → 0.25 each.
        double e = (625.0 / 676 + 0.01 + 1.62) / 4;
        Assert.Equal((255 * e + 0.25) / 256, EnhancedAlignmentMeasure.Mean([1, 1, 0, 0], B(1, 0, 0, 0), 2, 2), 12);
    }

    [Fact]
    public void EMeasure_SpecialCases_CountAgreeingPixels()
    {
        Assert.Equal(0.5, EnhancedAlignmentMeasure.Binary(B(1, 1, 0, 0), B(0, 0, 0, 0), 2, 2), 15);
        Assert.Equal(0.5, EnhancedAlignmentMeasure.Binary(B(1, 1, 0, 0), B(1, 1, 1, 1), 2, 2), 15);
        Assert.Equal(1.0, EnhancedAlignmentMeasure.Binary(B(0, 1, 1, 0), B(0, 1, 1, 0), 2, 2), 12);
    }

    [Fact]
    public void WeightedF_BackgroundFalsePositive_HandCase()
    {
        // G = [1, 0], P = [1, 1]: E = [0, 1]; the background error is replaced by the foreground's (0) before
        // filtering, so EA = 0 and the foreground keeps 0. Background weight 2 − 0.5^(1/5) at distance 1.
        // TPw = 1, FPw = 2 − 0.5^0.2, R = 1, P = 1 / (1 + FPw), F = 2P / (1 + P).
        double fpw = 2 - Math.Pow(0.5, 0.2);
        double prec = 1 / (1 + fpw);
        Assert.Equal(2 * prec / (1 + prec), WeightedFMeasure.Compute([1, 1], B(1, 0), 2, 1), 12);
    }

    [Fact]
    public void WeightedF_OnePixelHalfError_UsesTheGaussianCentreWeight()
    {
        // 1×1 image, G = 1, P = 0.5: E = 0.5; zero padding leaves EA = k_c · 0.5 < E, with k_c the centre of the
        // normalised 7×7 σ = 5 Gaussian, 1 / (Σ_x exp(−x²/50))². R = 1 − 0.5 k_c, P = 1, F = 2R / (R + 1).
        double s = Enumerable.Range(-3, 7).Sum(x => Math.Exp(-x * x / 50.0));
        double r = 1 - 0.5 / (s * s);
        Assert.Equal(2 * r / (r + 1), WeightedFMeasure.Compute([0.5f], B(1), 1, 1), 12);
    }

    [Fact]
    public void WeightedF_PerfectAndEmpty_AreOneAndZero()
    {
        var g = B(0, 1, 1, 0, 0, 1, 0, 0, 0);
        Assert.Equal(1.0, WeightedFMeasure.Compute(g.Select(x => x ? 1f : 0f).ToArray(), g, 3, 3), 12);
        Assert.Equal(0.0, WeightedFMeasure.Compute([1, 0, 0, 0], B(0, 0, 0, 0), 2, 2));
    }

    [Fact]
    public void Gaussian_SumsToOneAndIsSymmetric()
    {
        var k = WeightedFMeasure.Gaussian7x7Sigma5();
        Assert.Equal(1.0, k.Sum(), 14);
        Assert.Equal(k[0], k[48]);
        Assert.Equal(k[3], k[21]);
    }

    [Fact]
    public void GaussianFilter_Separable_MatchesDirect2DCorrelation()
    {
        var rng = new Random(9);
        int w = 11, h = 8;
        var src = Enumerable.Range(0, w * h).Select(_ => rng.NextDouble()).ToArray();
        var k = WeightedFMeasure.Gaussian7x7Sigma5();
        var got = WeightedFMeasure.GaussianFilter(src, w, h);
        double num = 0, den = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                double s = 0;
                for (int dy = -3; dy <= 3; dy++)
                    for (int dx = -3; dx <= 3; dx++)
                        if (y + dy >= 0 && y + dy < h && x + dx >= 0 && x + dx < w) s += k[(dy + 3) * 7 + dx + 3] * src[(y + dy) * w + x + dx];
                num += (got[y * w + x] - s) * (got[y * w + x] - s); den += s * s;
            }
        Assert.True(Math.Sqrt(num / den) < 1e-14, $"relative error {Math.Sqrt(num / den)}");
    }

    [Fact]
    public void Metrics_SizeMismatch_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() => Overlap.Iou([1, 0, 0], B(1, 0), 2, 1));
        Assert.Contains("2×1", e.Message);
    }

    [Fact]
    public void MetricNames_RoundTripAndUnknownNamesAreListed()
    {
        foreach (var m in SegmentationMetricNames.All) Assert.Equal(m, SegmentationMetricNames.Parse(m.Name()));
        var e = Assert.Throws<ArgumentException>(() => SegmentationMetricNames.Parse("f1"));
        Assert.Contains("weighted_f", e.Message);
    }

    [Fact]
    public void Scores_MaeBecomesOneMinusMaeAsAScore()
    {
        var s = new SegmentationScores(0.5, 0.6, 0.1, 0.7, 0.8, 0.9);
        Assert.Equal(0.9, s.Score(SegmentationMetric.Mae), 15);
        Assert.Equal(0.1, s.Value(SegmentationMetric.Mae), 15);
        var mean = SegmentationScores.Mean([s, s with { Iou = 0.7 }]);
        Assert.Equal(0.6, mean.Iou, 15);
    }
}
