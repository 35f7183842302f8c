using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CycleQD.Runs.Families;
using CycleQD.Onnx.Sam;
using CycleQD.Segmentation.Data;
using CycleQD.Segmentation.Metrics;
using CycleQD.Segmentation.Sam;

namespace CycleQD.Cli.Commands.Eval;

/// <summary>`cycleqd eval --task sam/&lt;dataset&gt;`: a SamModel folder scored on an image/mask dataset.</summary>
internal static class SamEval
{
    private static readonly Option<string?> SplitFile = new("--split-file") { Description = "sam/*: a file listing the image stems to use, one per line (default: every pair)." };

    private static readonly Option<string> Metric = new("--metric")
    {
        Description = "sam/*: the metric reported as the score: iou | dice | mae (scored as 1 - MAE) | s_measure | e_measure | weighted_f.",
        DefaultValueFactory = _ => "iou",
    };

    private static readonly Option<string> Prompt = new("--prompt")
    {
        Description = "sam/*: prompt drawn from each ground-truth mask: box (its bounding box) | point (the foreground pixel farthest from the background).",
        DefaultValueFactory = _ => "box",
    };

    private static readonly Option<string> Images = new("--images") { Description = "sam/*: image folder inside the dataset.", DefaultValueFactory = _ => "images" };

    private static readonly Option<string> Masks = new("--masks") { Description = "sam/*: mask folder inside the dataset.", DefaultValueFactory = _ => "masks" };

    private static readonly Option<string> MaskSuffix = new("--mask-suffix") { Description = "sam/*: what a mask's file name adds to its image's stem (ISIC: _segmentation).", DefaultValueFactory = _ => "" };


    /// <summary>`--dataset DIR`: an explicit dataset folder for sam/*, instead of &lt;data root&gt;/segmentation/&lt;dataset&gt;.</summary>
    internal static readonly Option<string?> Dataset = new("--dataset")
    {
        Description = "sam/*: the dataset folder (holding images/ and masks/), instead of <data>/segmentation/<dataset>.",
    };

    public static IEnumerable<Option> Options => [Dataset, SplitFile, Metric, Prompt, Images, Masks, MaskSuffix];

    /// <summary>
    /// The folder sam/<paramref name="dataset"/> reads: <paramref name="explicitFolder"/> (--dataset) when
    /// given, else &lt;data root&gt;/segmentation/&lt;dataset&gt;. --data is the data root for every task;
    /// a --data that is itself a dataset folder (it holds the images folder and no segmentation/&lt;dataset&gt;),
    /// as earlier versions took it, is still read, with a warning saying to use --dataset.
    /// </summary>
    internal static string DatasetFolder(string dataset, string? explicitFolder, string? data, string imagesFolder, TextWriter err)
    {
        if (explicitFolder != null)
        {
            if (data != null) throw new CliUsageException("give --dataset DIR or --data ROOT for a sam/* task, not both");
            string full = Path.GetFullPath(explicitFolder);
            return Directory.Exists(full) ? full : throw new DirectoryNotFoundException($"--dataset: folder not found: {full}");
        }
        string root = EvalCommand.ResolveDataDir(data);
        string under = Path.Combine(root, "segmentation", dataset);
        if (data != null && !Directory.Exists(under) && Directory.Exists(Path.Combine(root, imagesFolder)))
        {
            err.WriteLine($"warning: --data {root} is a dataset folder; --data is the data root (sam/{dataset} reads <data>/segmentation/{dataset}); read as --dataset {root}, which is the option to use");
            return root;
        }
        if (!Directory.Exists(under))
            throw new DirectoryNotFoundException($"sam/{dataset}: dataset folder not found: {under} (--data is the data root; give --dataset DIR for a folder elsewhere)");
        return under;
    }

    public static async Task<int> RunAsync(ParseResult parse, Commands.Run.RunOutputMode mode, string task, string? model, string? responder, string? data, int? limit, string? output, CancellationToken ct)
    {
        var stdout = parse.InvocationConfiguration.Output;
        bool normal = mode == Commands.Run.RunOutputMode.Normal;
        var o = normal ? stdout : TextWriter.Null;
        string dataset = task["sam/".Length..];
        if (dataset.Length == 0) throw new CliUsageException("--task sam/<dataset>: the dataset name is missing");
        if (responder != null) throw new CliUsageException("sam/* tasks have no scripted responder: give --model DIR (a SamModel folder)");
        if (model is null) throw new CliUsageException("sam/* tasks need --model DIR (a SamModel folder)");
        if (limit is <= 0) throw new CliUsageException($"--limit must be positive (got {limit})");
        int threads = parse.GetValue(EvalCommand.Threads) ?? 0;
        // SAM's graphs run float32 on either provider; --dtype and --graph choose a Llama graph.
        if (parse.GetValue(Generate.GenerateCommand.Graph) is not null || Generate.GenerateCommand.ParseDType(parse.GetValue(Generate.GenerateCommand.DType)!) != Onnx.Graph.OnnxElementType.Float)
            throw new CliUsageException("--dtype and --graph apply to Llama-family models; SAM's graphs run float32 (use --device to choose the provider)");
        var device = Generate.GenerateCommand.ParseDevice(parse.GetValue(Generate.GenerateCommand.Device)!);
        if (device != Onnx.Runtime.InferenceDevice.Cpu) ThreadsOption.Refuse(parse.GetValue(EvalCommand.Threads), Generate.GenerateCommand.CudaThreadsWhy);
        string dataDir = DatasetFolder(dataset, parse.GetValue(Dataset), data, parse.GetValue(Images)!, parse.InvocationConfiguration.Error);
        // Warnings above go to stderr in every mode; the progress bar only in the normal one.
        SegmentationMetric metric;
        SamPromptKind prompt;
        try
        {
            metric = SegmentationMetricNames.Parse(parse.GetValue(Metric)!);
            prompt = GroundTruthPrompts.Parse(parse.GetValue(Prompt)!);
        }
        catch (ArgumentException e)
        {
            throw new CliUsageException(e.Message);
        }
        var bench = new SamBenchmark(new SamTaskOptions
        {
            Name = task, Metric = metric, Prompt = prompt,
            Data = new SegmentationDatasetOptions
            {
                DataDir = dataDir, SplitFile = parse.GetValue(SplitFile), Limit = limit,
                ImagesFolder = parse.GetValue(Images)!, MasksFolder = parse.GetValue(Masks)!, MaskSuffix = parse.GetValue(MaskSuffix)!,
            },
        });
        int count = bench.Dataset.Samples.Count;
        string modelDir = Path.GetFullPath(model);
        ModelKindCheck.Require(modelDir, ModelFamilies.Sam, $"eval --task {task}");
        using var sam = SamModel.Open(modelDir, threads, device);
        string outPath = Path.GetFullPath(output ?? EvalCommand.DefaultOutput(modelDir, null, task, null));
        o.WriteLine($"task: {task}: {count} images in {bench.Dataset.DataDir}, {prompt.ToString().ToLowerInvariant()} prompts, score = {metric.Name()}; model {modelDir} (image size {sam.ImageSize})");
        var progress = new EvalCommand.TextProgress(normal ? parse.InvocationConfiguration.Error : TextWriter.Null);
        var sw = Stopwatch.StartNew();
        var report = await bench.EvaluateAsync(sam, progress, ct).ConfigureAwait(false);
        sw.Stop();
        progress.Finish();
        EvalCommand.WriteDetails(outPath, report);
        var inv = CultureInfo.InvariantCulture;
        string scoreLine = $"score: {report.Score.ToString("0.######", inv)} ({metric.Name()}{(metric == SegmentationMetric.Mae ? ", as 1 - MAE" : "")}; {report.Samples.Count(s => s.Correct)}/{report.Samples.Count} images with IoU ≥ 0.5)";
        o.WriteLine(scoreLine);
        foreach (var m in SegmentationMetricNames.All)
            o.WriteLine($"  {m.Name(),-28}{report.Metrics[m.Name()].ToString("0.######", inv)}");
        o.WriteLine($"time: {sw.Elapsed.TotalSeconds.ToString("F2", inv)} s ({(report.Samples.Count / Math.Max(sw.Elapsed.TotalSeconds, 1e-9)).ToString("F2", inv)} images/s)");
        o.WriteLine($"details: {outPath}");
        EvalCommand.WriteResult(stdout, mode, scoreLine, report, task, null, modelDir, null, outPath, sw.Elapsed.TotalSeconds);
        return 0;
    }
}
