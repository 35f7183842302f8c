using System.Globalization;
using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Sam;
using CycleQD.Segmentation.Data;
using CycleQD.Segmentation.Imaging;
using CycleQD.Segmentation.Metrics;

namespace CycleQD.Segmentation.Sam;

/// <summary>A sam/&lt;dataset&gt; task: the data, the prompts and the metric that becomes the score.</summary>
public sealed record SamTaskOptions
{
    /// <summary>Task name, e.g. "sam/kvasir".</summary>
    public required string Name { get; init; }

    /// <summary>Where the image/mask pairs are.</summary>
    public required SegmentationDatasetOptions Data { get; init; }

    /// <summary>The metric reported as the score (MAE as 1 − MAE).</summary>
    public SegmentationMetric Metric { get; init; } = SegmentationMetric.Iou;

    /// <summary>The prompt drawn from each ground-truth mask.</summary>
    public SamPromptKind Prompt { get; init; } = SamPromptKind.Box;
}

/// <summary>
/// Scores a SAM model on one dataset: for every image, encode once, decode one prompt drawn from its
/// ground-truth mask, post-process the mask to the original size and compute the six metrics against
/// the ground truth; the report's score is the chosen metric's mean over images, its Metrics all six.
/// Box prompts decode a single mask; point prompts decode SAM's three and keep the one with the
/// highest predicted IoU (SAM's own choice for an ambiguous single point). Metrics are computed on
/// the binary mask SAM outputs. A sample counts as correct when its IoU is ≥ 0.5.
/// Decoded images, masks and prompts are kept after the first evaluation (the search scores many
/// candidates on the same data); Samples records one line of metrics per image.
/// </summary>
public sealed class SamBenchmark
{
    private readonly SamTaskOptions _options;
    private readonly Lazy<SegmentationDataset> _dataset;
    private readonly Dictionary<int, (RgbImage Image, BinaryMask Mask, SamPromptKind Kind, float[] Coords)> _cache = [];

    /// <param name="options">Task settings; the folder is listed (and checked) on first use or by <see cref="Dataset"/>.</param>
    public SamBenchmark(SamTaskOptions options)
    {
        _options = options;
        _dataset = new Lazy<SegmentationDataset>(() => SegmentationDataset.Open(options.Data));
    }

    /// <summary>Task name.</summary>
    public string Name => _options.Name;

    /// <summary>The task's settings.</summary>
    public SamTaskOptions Options => _options;

    /// <summary>The dataset (listed and matched on first access).</summary>
    public SegmentationDataset Dataset => _dataset.Value;

    /// <summary>Runs the task on <paramref name="model"/>.</summary>
    public Task<EvaluationReport> EvaluateAsync(ISamPredictor model, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Task.Run(() => Evaluate(model, progress, cancellationToken), cancellationToken);

    private EvaluationReport Evaluate(ISamPredictor model, IProgress<EvaluationProgress>? progress, CancellationToken ct)
    {
        var data = Dataset;
        var transform = new SamImageTransform(model.ImageSize);
        var perImage = new List<SegmentationScores>(data.Samples.Count);
        var outcomes = new List<SampleOutcome>(data.Samples.Count);
        var inv = CultureInfo.InvariantCulture;
        for (int i = 0; i < data.Samples.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            var (image, truth, kind, coords) = Sample(i);
            var predicted = Segment(model, transform, image, kind, coords);
            var scores = SegmentationScores.Compute(predicted.ToFloat(), truth.Pixels, truth.Width, truth.Height);
            perImage.Add(scores);
            string prompt = $"{kind.ToString().ToLowerInvariant()} [{string.Join(", ", coords.Select(c => c.ToString("0.##", inv)))}]";
            string reason = string.Join(" ", SegmentationMetricNames.All.Select(m => $"{m.Name()}={scores.Value(m).ToString("0.####", inv)}"));
            outcomes.Add(new SampleOutcome(data.Samples[i].Id, scores.Iou >= 0.5, prompt, [], reason));
            progress?.Report(new EvaluationProgress(Name, i + 1, data.Samples.Count));
        }
        var mean = SegmentationScores.Mean(perImage);
        var metrics = SegmentationMetricNames.All.ToDictionary(m => m.Name(), mean.Value);
        return new EvaluationReport(Name, mean.Score(_options.Metric), metrics, outcomes);
    }

    /// <summary>The predicted mask for one image and prompt (original pixel coordinates), at the image's size.</summary>
    public static BinaryMask Segment(ISamPredictor model, SamImageTransform transform, RgbImage image, SamPromptKind kind, float[] coords)
    {
        var embedding = model.EncodeImage(transform.Preprocess(image));
        var scaled = transform.TransformCoords(coords, image.Width, image.Height);
        var prompt = kind == SamPromptKind.Box ? new SamPrompt(scaled, null, null) : new SamPrompt(null, scaled, [1]);
        var output = model.Decode(embedding, prompt, multimask: kind == SamPromptKind.Point);
        int best = 0;
        for (int m = 1; m < output.MaskCount; m++)
            if (output.IouPredictions[m] > output.IouPredictions[best]) best = m;
        int plane = output.LowResSize * output.LowResSize;
        var logits = transform.PostprocessLogits(output.LowResMasks.AsSpan(best * plane, plane), output.LowResSize, image.Width, image.Height);
        return SamImageTransform.Binarize(logits, image.Width, image.Height);
    }

    private (RgbImage, BinaryMask, SamPromptKind, float[]) Sample(int i)
    {
        if (_cache.TryGetValue(i, out var c)) return c;
        var (image, mask) = Dataset.Load(i);
        float[] coords;
        try
        {
            coords = _options.Prompt == SamPromptKind.Box ? GroundTruthPrompts.BoundingBox(mask) : GroundTruthPrompts.CentrePoint(mask);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"mask {Dataset.Samples[i].MaskPath}: {e.Message}");
        }
        return _cache[i] = (image, mask, _options.Prompt, coords);
    }
}
