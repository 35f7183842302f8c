using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CycleQD.Onnx.Sam;

namespace CycleQD.Cli.Commands.Bench;

/// <summary>
/// `cycleqd bench sam`: image-encoder images/s and mask-decoder prompts/s of a SAM model on ONNX
/// Runtime's CPU provider (the tiny random model unless --model is given), the cost of binding
/// another weight set, and the parameter and FLOP counts of the model and of sam-vit-base.
/// </summary>
internal static class SamBenchCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "A Hugging Face SamModel folder (default: a random model of --architecture, written to a temporary folder)." };
        var architecture = new Option<string>("--architecture") { Description = "Random model to write when --model is absent: tiny or sam-vit-base.", DefaultValueFactory = _ => "tiny" };
        var images = NumericOptions.Whole("--images", "Encoder runs per repetition.", 20, NumericRange.AtLeast(1));
        var prompts = NumericOptions.Whole("--prompts", "Decoder runs per repetition and prompt kind.", 200, NumericRange.AtLeast(1));
        var repeats = NumericOptions.Whole("--repeats", "Timed repetitions (the best is reported, the median beside it).", 5, NumericRange.AtLeast(1));
        var threads = NumericOptions.Whole("--threads", "ONNX Runtime intra-op threads (0 = its default).", 0, NumericRange.AtLeast(0));
        var cmd = new Command("sam", "SAM on ONNX Runtime (CPU): encoder images/s, decoder prompts/s, weight-binding time; parameter and FLOP counts of the model and of sam-vit-base.")
        {
            model, architecture, images, prompts, repeats, threads,
        };
        cmd.SetAction(parse => Run(parse.GetValue(model), parse.GetValue(architecture)!, parse.GetValue(images), parse.GetValue(prompts), parse.GetValue(repeats), parse.GetValue(threads),
            parse.InvocationConfiguration.Output));
        return cmd;
    }

    internal static int Run(string? folder, string architecture, int images, int prompts, int repeats, int threads, TextWriter o)
    {
        if (images < 1 || prompts < 1 || repeats < 1) throw new CliUsageException("--images, --prompts and --repeats must be ≥ 1");
        if (threads < 0) throw new CliUsageException("--threads must be ≥ 0");
        var inv = CultureInfo.InvariantCulture;
        string? temp = null;
        if (folder is null)
        {
            var random = architecture switch
            {
                "tiny" => TinySamWriter.Config(),
                "sam-vit-base" => SamCost.SamVitBase,
                _ => throw new CliUsageException($"--architecture {architecture}: expected tiny or sam-vit-base"),
            };
            temp = Directory.CreateTempSubdirectory("cycleqd-sam-bench-").FullName;
            TinySamWriter.WriteBase(temp, seed: 1, random);
            folder = temp;
        }
        try
        {
            using var sam = SamModel.Open(folder, threads);
            var config = sam.Config;
            var cost = SamCost.Of(config);
            o.WriteLine($"cycleqd bench sam: {(temp is null ? folder : $"random {architecture} SAM (TinySamWriter, seed 1)")}; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
            o.WriteLine(string.Create(inv, $"  image {config.Vision.ImageSize}, ViT {config.Vision.HiddenSize}×{config.Vision.NumHiddenLayers}, {cost.Parameters:N0} parameters; ONNX Runtime CPU provider, float32, threads {(threads == 0 ? "default" : threads.ToString(inv))}; best and median of {repeats}"));

            int weightInputs = SamWeightLayout.Encoder(config).Count + SamWeightLayout.Decoder(config).Count;
            o.WriteLine(string.Create(inv, $"  graphs: encoder {SamGraphBuilder.BuildEncoder(config).NodeCount} nodes, decoder {SamGraphBuilder.BuildDecoder(config).NodeCount} nodes; {weightInputs} weight inputs"));
            var rng = new Random(7);
            var pixels = new float[config.Vision.NumChannels * config.Vision.ImageSize * config.Vision.ImageSize];
            for (int i = 0; i < pixels.Length; i++) pixels[i] = (float)(rng.NextDouble() * 4 - 2);
            var embedding = sam.EncodeImage(pixels); // warm-up
            var table = new TextTable("stage", "runs", "best s", "median s", "per second", "GFLOP/s").AlignRight(1, 2, 3, 4, 5);
            void Time(string stage, int runs, double flopsPerRun, Action once)
            {
                once();
                var seconds = new double[repeats];
                for (int r = 0; r < repeats; r++)
                {
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < runs; i++) once();
                    seconds[r] = sw.Elapsed.TotalSeconds;
                }
                Array.Sort(seconds);
                double best = seconds[0], median = seconds[repeats / 2];
                table.Add(stage, runs.ToString(inv), best.ToString("F3", inv), median.ToString("F3", inv),
                    (runs / best).ToString("F1", inv), (flopsPerRun * runs / best / 1e9).ToString("F2", inv));
            }
            float s = config.Vision.ImageSize;
            var box = new SamPrompt([0.2f * s, 0.25f * s, 0.7f * s, 0.8f * s], null, null);
            var point = new SamPrompt(null, [0.5f * s, 0.4f * s], [1]);
            Time("encoder (images)", images, cost.EncoderFlops, () => sam.EncodeImage(pixels));
            Time("decoder, box, multimask (prompts)", prompts, cost.DecoderFlops, () => sam.Decode(embedding, box, true));
            Time("decoder, 1 point, single mask (prompts)", prompts, SamCost.Of(config, 2).DecoderFlops, () => sam.Decode(embedding, point, false));
            table.Write(o, "  ");

            // Another weight set on the same sessions: what a CycleQD candidate costs to switch to.
            var expert = CopyWeights(sam, config);
            double bindMs = double.MaxValue, buildMs = double.MaxValue;
            for (int r = 0; r <= repeats; r++) // the first round warms up and is not counted
            {
                var bind = Stopwatch.StartNew();
                using (var swapped = sam.WithWeights(expert, "copy"))
                {
                    bind.Stop();
                    swapped.EncodeImage(pixels);
                }
                var build = Stopwatch.StartNew();
                using (new SamSessions(config, threads)) build.Stop();
                if (r == 0) continue;
                bindMs = Math.Min(bindMs, bind.Elapsed.TotalMilliseconds);
                buildMs = Math.Min(buildMs, build.Elapsed.TotalMilliseconds);
            }
            o.WriteLine(string.Create(inv, $"  binding another weight set (best of {repeats}): {bindMs:F2} ms; building new sessions: {buildMs:F1} ms"));
            o.WriteLine();

            var counts = new TextTable("architecture", "parameters", "encoder params", "decoder params", "encoder GFLOP/image", "decoder GFLOP/prompt (box)").AlignRight(1, 2, 3, 4, 5);
            void Row(string name, SamCost c) => counts.Add(name, c.Parameters.ToString("N0", inv), c.EncoderParameters.ToString("N0", inv), c.DecoderParameters.ToString("N0", inv),
                (c.EncoderFlops / 1e9).ToString("F3", inv), (c.DecoderFlops / 1e9).ToString("F3", inv));
            Row(temp is null ? "this model" : architecture, cost);
            if (!(temp is not null && architecture == "sam-vit-base")) Row("sam-vit-base", SamCost.Of(SamCost.SamVitBase));
            counts.Write(o, "  ");
            return 0;
        }
        finally
        {
            if (temp is not null) Directory.Delete(temp, recursive: true);
        }
    }

    /// <summary>A copy of the model's own weights as float32 arrays (read back through the writer's layout).</summary>
    private static Dictionary<string, float[]> CopyWeights(SamModel sam, SamConfig config)
    {
        using var file = CycleQD.Tensors.SafetensorsModel.Open(sam.Directory);
        return SamWeightLayout.Encoder(config).Concat(SamWeightLayout.Decoder(config)).ToDictionary(w => w.Name, w => file.ReadSingle(w.Name));
    }
}
