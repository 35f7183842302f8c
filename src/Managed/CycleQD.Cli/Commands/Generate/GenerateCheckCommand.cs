using System.CommandLine;
using System.Globalization;
using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Runs.Families;

namespace CycleQD.Cli.Commands.Generate;

/// <summary>
/// `cycleqd generate check`: the fused graph's logits against the plain graph's (the reference) on a
/// model, device and type. A batch of prompts of different lengths (the fused graph right-pads them,
/// the plain graph left-pads) is prefilled, then decoded step by step with the same tokens fed to both
/// graphs (the plain graph's greedy picks), so one difference does not carry into the next steps.
/// Exits 1 when a step's worst row exceeds the type's tolerance.
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

    /// <summary>
    /// Worst relative difference ‖fused − plain‖/‖plain‖ of a row's logits a step may show: rounding of
    /// the type, with room for the two graphs' different operator orders. Wrong positions, masks or
    /// caches give differences of order 1.
    /// </summary>
    internal static double Tolerance(OnnxElementType type) => type switch
    {
        OnnxElementType.Float => 1e-4,
        OnnxElementType.Float16 => 3e-2,
        _ => 1e-1,
    };

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
        int vocab = config.VocabSize, capacity = prompts.Max(p => p.Length) + steps;
        var inv = CultureInfo.InvariantCulture;
        double tolerance = Tolerance(type), worst = 0;
        o.WriteLine($"model {llm.Folder.Directory}, device {dev}, {type}: fused graph ({(FusedLlamaGraphBuilder.RotaryInAttention(config) ? "rotary inside attention" : "RotaryEmbedding operators")}) against the plain graph");
        o.WriteLine($"{batch} prompts of {string.Join(", ", prompts.Select(p => p.Length))} tokens, then {steps} steps with the same tokens in both");
        o.WriteLine("step  worst relative error  rows with the same greedy token");
        using (var plainDecoder = llm.Session.StartBatch(llm.Weights, batch, capacity))
        using (var fusedDecoder = fused.StartBatch(llm.Weights, batch, capacity))
        {
            var p = plainDecoder.Prefill(prompts);
            var f = fusedDecoder.Prefill(prompts);
            for (int step = 0; ; step++)
            {
                double stepWorst = 0;
                int same = 0;
                var next = new int[batch];
                for (int r = 0; r < batch; r++)
                {
                    var pr = p.AsSpan(r * vocab, vocab);
                    var fr = f.AsSpan(r * vocab, vocab);
                    stepWorst = Math.Max(stepWorst, RelativeDifference(fr, pr));
                    next[r] = ArgMax(pr);
                    if (ArgMax(fr) == next[r]) same++;
                }
                worst = Math.Max(worst, stepWorst);
                o.WriteLine(string.Create(inv, $"{(step == 0 ? "prompt" : step.ToString(inv)),6}  {stepWorst,20:0.00E+00}  {same}/{batch}"));
                if (step == steps) break;
                p = plainDecoder.Decode(next);
                f = fusedDecoder.Decode(next);
            }
        }
        bool pass = worst <= tolerance;
        o.WriteLine(string.Create(inv, $"fused vs plain: worst relative error {worst:0.00E+00}, tolerance {tolerance:0E+00} for {type}: {(pass ? "PASS" : "FAIL")}"));
        return pass ? 0 : CliApp.ExitBadInput;
    }

    /// <summary>The first index of the largest value (NaN never wins).</summary>
    private static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>‖a − b‖ / ‖b‖ in double (∞ when b is zero and a is not; NaN anywhere gives NaN, which fails the check).</summary>
    internal static double RelativeDifference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = (double)a[i] - b[i];
            num += d * d;
            den += (double)b[i] * b[i];
        }
        return den > 0 ? Math.Sqrt(num / den) : num > 0 ? double.PositiveInfinity : 0;
    }
}
