using System.CommandLine;
using System.Globalization;
using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Runs.Families;

namespace CycleQD.Cli.Commands.Generate;

/// <summary>
/// `cycleqd generate check`: the fused graph's logits against the plain graph's (the reference) on a
/// model, device and type, through <see cref="GraphComparison"/>: a batch of prompts of different
/// lengths (the fused graph right-pads them, the plain graph left-pads), then decoding steps fed the
/// same tokens. Exits 1 when a step's worst row exceeds the type's tolerance.
/// </summary>
internal static class GenerateCheckCommand
{
    private static readonly Option<int> Steps = NumericOptions.Whole("--steps", "Decoding steps after the prompts.", 16, NumericRange.AtLeast(1));
    private static readonly Option<int> Batch = NumericOptions.Whole("--batch", "Prompts decoded together (of different lengths).", 4, NumericRange.AtLeast(1));

    public static Command Create()
    {
        var cmd = new Command("check", "Compare the fused graph's logits with the plain graph's on this model, device and type; exit 1 beyond the type's tolerance.");
        foreach (var o in new Option[] { GenerateCommand.Model, GenerateCommand.Device, GenerateCommand.DType, Steps, Batch }) cmd.Options.Add(o);
        cmd.SetAction(parse => Run(parse.GetValue(GenerateCommand.Model), parse.GetValue(GenerateCommand.Device)!, parse.GetValue(GenerateCommand.DType)!,
            parse.GetValue(Steps), parse.GetValue(Batch), parse.InvocationConfiguration.Output));
        return cmd;
    }

    internal static int Run(string? model, string device, string dtype, int steps, int batch, TextWriter o)
    {
        if (string.IsNullOrEmpty(model)) throw new CliUsageException("--model is required");
        var (dev, type, _) = GenerateCommand.ParseRuntime(device, dtype, null);
        if (!FusedLlamaSession.SupportsElementType(dev, type))
            throw new CliUsageException($"generate check runs the fused graph, which on --device {dev.ToString().ToLowerInvariant()} runs " +
                (dev == InferenceDevice.Cuda ? "float16 or bfloat16 (GroupQueryAttention has no float32 CUDA kernel): add --dtype bfloat16" : "float32 or float16"));
        ModelKindCheck.Require(model, ModelFamilies.Llama, "generate check");
        using var llm = LlamaModel.Open(model, dev, maxBatch: batch, elementType: type, graph: LlamaGraphKind.Plain);
        var config = llm.Folder.Config;
        if (!FusedLlamaSession.Supports(config))
            throw new CliUsageException($"generate check: {llm.Folder.ConfigPath} has head_dim {config.HeadDim}; the fused graph needs a multiple of 8");
        using var fused = ILlamaSession.Open(LlamaGraphKind.Fused, config, new LlamaGraphOptions(type, LastPositionLogitsOnly: true), dev, llm.Folder.ConfigPath);
        var prompts = Enumerable.Range(0, batch)
            .Select(i => llm.Generator.EncodePrompt(new GenerationRequest(GenerateBenchCommand.Prompts[i % GenerateBenchCommand.Prompts.Length], steps)))
            .ToList();
        var inv = CultureInfo.InvariantCulture;
        var attention = ((FusedLlamaSession)fused).Attention;
        o.WriteLine($"model {llm.Folder.Directory}, device {dev}, {type}: fused graph ({attention}, " +
            $"{(FusedLlamaGraphBuilder.RotaryInAttention(config, attention) ? "rotary inside attention" : "RotaryEmbedding operators")}) against the plain graph");
        o.WriteLine($"{batch} prompts of {string.Join(", ", prompts.Select(p => p.Length))} tokens, then {steps} steps with the same tokens in both");
        o.WriteLine("step  worst relative error  rows with the same greedy token");
        double worst = 0;
        foreach (var s in GraphComparison.Run(llm.Session, fused, llm.Weights, prompts, steps))
        {
            worst = Math.Max(worst, s.WorstRelativeError); // NaN stays NaN and fails
            o.WriteLine(string.Create(inv, $"{(s.Step == 0 ? "prompt" : s.Step.ToString(inv)),6}  {s.WorstRelativeError,20:0.00E+00}  {s.SameGreedyRows}/{batch}"));
        }
        double tolerance = GraphComparison.Tolerance(type);
        bool pass = worst <= tolerance;
        o.WriteLine(string.Create(inv, $"fused vs plain: worst relative error {worst:0.00E+00}, tolerance {tolerance:0E+00} for {type}: {(pass ? "PASS" : "FAIL")}"));
        return pass ? 0 : CliApp.ExitBadInput;
    }
}
