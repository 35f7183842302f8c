using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CycleQD.Runs.Families;
using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Generation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;

namespace CycleQD.Cli.Commands.Generate;

/// <summary>
/// `cycleqd generate bench`: greedy generation throughput at several batch sizes, and the cost of
/// binding a new weight set to an existing session against building a new session.
/// </summary>
internal static class GenerateBenchCommand
{
    private static readonly Option<string> Batches = new("--batches") { Description = "Comma-separated batch sizes.", DefaultValueFactory = _ => "1,64" };
    private static readonly Option<int> NewTokens = NumericOptions.Whole("--new-tokens", "Most tokens generated per sequence (a sequence that reaches EOS stops; tokens/s counts the tokens produced).", 128, NumericRange.AtLeast(1));
    private static readonly Option<int> Repeats = NumericOptions.Whole("--repeats", "Timed repetitions per measurement (the best is reported).", 3, NumericRange.AtLeast(1));
    private static readonly Option<int> Threads = NumericOptions.Whole("--threads", "ONNX Runtime intra-op threads per session (0 = its default; picked lanes get one each, --lanes N shares the cores among them).", 0, NumericRange.AtLeast(0));
    private static readonly Option<int> Lanes = NumericOptions.Whole("--lanes",
        "--device cpu: sessions that decode a call's requests as that many batches side by side, each on its own thread (0 = one per core, at most 8, one thread each, for a model of at most 32 MiB with the default threads; else 1).",
        0, NumericRange.AtLeast(0));

    internal static readonly string[] Prompts =
    [
        "Once upon a time", "Lily and Tim went to the park. They", "The cat sat on the mat.",
        "One day, a little dog named Max found a big red ball!", "Tom had a red car.", "The sun was hot.",
    ];

    public static Command Create()
    {
        var cmd = new Command("bench", "Measure generation tokens/s per batch size and weight-binding vs session-building time.");
        foreach (var o in new Option[] { GenerateCommand.Model, GenerateCommand.Device, GenerateCommand.DType, GenerateCommand.Graph, Batches, NewTokens, Repeats, Threads, Lanes }) cmd.Options.Add(o);
        cmd.SetAction(parse => Run(parse.GetValue(GenerateCommand.Model), parse.GetValue(GenerateCommand.Device)!, parse.GetValue(GenerateCommand.Graph), parse.GetValue(Batches)!,
            parse.GetValue(NewTokens), parse.GetValue(Repeats), parse.GetValue(Threads), parse.InvocationConfiguration.Output, parse.GetValue(GenerateCommand.DType) ?? "float32",
            parse.GetValue(Lanes)));
        return cmd;
    }

    internal static int Run(string? model, string device, string? graph, string batches, int newTokens, int repeats, int threads, TextWriter o, string dtype = "float32", int lanes = 0)
    {
        if (string.IsNullOrEmpty(model)) throw new CliUsageException("--model is required");
        if (newTokens < 1 || repeats < 1) throw new CliUsageException("--new-tokens and --repeats must be ≥ 1");
        var sizes = batches.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => int.TryParse(s, out int b) && b > 0 ? b : throw new CliUsageException($"--batches: '{s}' is not a positive integer")).ToArray();
        var (dev, elementType, graphKind) = GenerateCommand.ParseRuntime(device, dtype, graph);
        if (dev == InferenceDevice.Cuda && lanes > 1) throw new CliUsageException("--lanes: with --device cuda one session runs on the GPU; lanes are CPU sessions side by side");
        var inv = CultureInfo.InvariantCulture;
        ModelKindCheck.Require(model, ModelFamilies.Llama, "generate bench");
        var open = Stopwatch.StartNew();
        using var llm = LlamaModel.Open(model, dev, maxBatch: sizes.Max(), intraOpThreads: threads, elementType: elementType, graph: graphKind, lanes: lanes);
        open.Stop();
        o.WriteLine($"model {llm.Folder.Directory}, device {dev}, {elementType}, graph {llm.Session.Graph.ToString().ToLowerInvariant()}{(llm.Session is FusedLlamaSession f ? $" ({f.Attention})" : "")}, {newTokens} new tokens per sequence, best of {repeats}, " +
                    $"threads {(llm.ThreadsPerLane == 0 ? "default" : llm.ThreadsPerLane.ToString(inv))}{(llm.Lanes > 1 ? $" per lane, {llm.Lanes} lanes (a batch of b requests is decoded as {llm.Lanes} batches side by side)" : ", 1 lane")}");
        o.WriteLine(string.Create(inv, $"opened in {open.Elapsed.TotalSeconds:F2} s ({(dev == InferenceDevice.Cuda ? "session built, weights copied to the GPU once" : "session built, weights bound from the memory map, converted once where stored in another type")})"));
        o.WriteLine("batch  prompt_tokens  generated  seconds  tokens/s");
        foreach (int b in sizes)
        {
            var requests = Enumerable.Range(0, b).Select(i => new GenerationRequest(Prompts[i % Prompts.Length], newTokens)).ToList();
            // A sequence that reaches EOS stops early; tokens/s counts only tokens actually produced. Warm up first.
            llm.Generator.Generate(requests.Take(Math.Min(b, 2)).Select(r => r with { MaxNewTokens = 4 }).ToList());
            GenerationStats? best = null;
            for (int r = 0; r < repeats; r++)
            {
                llm.Generator.Generate(requests);
                var s = llm.Generator.LastStats!;
                if (best is null || s.TokensPerSecond > best.TokensPerSecond) best = s;
            }
            o.WriteLine(string.Create(inv, $"{b,5}  {best!.PromptTokens,13}  {best.GeneratedTokens,9}  {best.Seconds,7:F3}  {best.TokensPerSecond,8:F1}"));
        }

        var sw = new Stopwatch();
        double bindBest = double.MaxValue, sessionBest = double.MaxValue;
        using var file = llm.Folder.OpenWeights();
        for (int r = 0; r < Math.Max(repeats, 5); r++)
        {
            sw.Restart();
            using (var w = LlamaWeights.FromSafetensors(file, llm.Folder.Config, elementType)) { }
            bindBest = Math.Min(bindBest, sw.Elapsed.TotalMilliseconds);
            sw.Restart();
            using (var s = ILlamaSession.Open(llm.Session.Graph, llm.Folder.Config, new LlamaGraphOptions(elementType, LastPositionLogitsOnly: true), dev, llm.Folder.ConfigPath, llm.ThreadsPerLane)) { }
            sessionBest = Math.Min(sessionBest, sw.Elapsed.TotalMilliseconds);
        }
        o.WriteLine(string.Create(inv, $"bind a weight set to the existing session: {bindBest:F3} ms (best); build a new session: {sessionBest:F3} ms (best)"));
        return 0;
    }
}
