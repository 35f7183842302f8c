using System.CommandLine;
using System.Globalization;
using CycleQD.Runs.Families;
using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Onnx.Tokenization;

namespace CycleQD.Cli.Commands.Generate;

/// <summary>`cycleqd generate --model DIR --prompt TEXT`: continues one prompt and prints only the continuation.</summary>
internal static class GenerateCommand
{
    internal static readonly Option<string> Model = new("--model", "-m") { Description = "Hugging Face Llama-family model folder (config.json, safetensors, tokenizer)." };
    private static readonly Option<string> Prompt = new("--prompt", "-p") { Description = "Prompt text (a user message with --chat)." };
    private static readonly Option<int> MaxNewTokens = NumericOptions.Whole("--max-new-tokens", "Most tokens to generate.", 256, NumericRange.AtLeast(0), "-n");
    private static readonly Option<double> Temperature = NumericOptions.Real("--temperature", "0 = greedy (default); otherwise the sampling temperature.", 0.0, NumericRange.AtLeast(0), "-t");
    private static readonly Option<double> TopP = NumericOptions.Real("--top-p", "Nucleus sampling mass in (0, 1] (with --temperature > 0).", 1.0, new NumericRange(0, 1, MinExclusive: true));
    private static readonly Option<ulong> Seed = NumericOptions.Whole("--seed", "Sampling seed (with --temperature > 0).", 0UL);
    internal static readonly Option<string> Device = new("--device", "-d") { Description = "Execution provider: cpu or cuda.", DefaultValueFactory = _ => "cpu" };
    internal static readonly Option<string?> Graph = new("--graph") { Description = "ONNX graph: fused (ONNX Runtime contrib operators, one in-place KV buffer; CPU float32/float16, CUDA float16/bfloat16; the default where it runs) or plain (standard operators; any device and type)." };
    private static readonly Option<bool> Chat = new("--chat") { Description = "Render the prompt as a user turn with the model's chat template (Llama-3 or the code-instruction format)." };
    private static readonly Option<string[]> Stop = new("--stop") { Description = "Stop before this string (repeatable).", AllowMultipleArgumentsPerToken = false };
    internal static readonly Option<string> DType = new("--dtype") { Description = "Graph and weight type: float32, float16 (CUDA; on CPU through inserted casts) or bfloat16 (CUDA only).", DefaultValueFactory = _ => "float32" };
    private static readonly Option<bool> Stats = new("--stats") { Description = "Print token counts and tokens/s to stderr." };

    private static readonly Option<int?> Threads = ThreadsOption.Create("--device cpu: ONNX Runtime intra-op threads (refused with --device cuda)");

    public static Command Create()
    {
        var cmd = new Command("generate", "Continue a prompt with a Llama-family model on ONNX Runtime; prints only the continuation.");
        foreach (var o in new Option[] { Model, Prompt, MaxNewTokens, Temperature, TopP, Seed, Device, DType, Graph, Chat, Stop, Stats, Threads }) cmd.Options.Add(o);
        cmd.SetAction(parse => Run(
            parse.GetValue(Model), parse.GetValue(Prompt), parse.GetValue(MaxNewTokens), parse.GetValue(Temperature), parse.GetValue(TopP),
            parse.GetValue(Seed), parse.GetValue(Device)!, parse.GetValue(DType)!, parse.GetValue(Graph), parse.GetValue(Chat), parse.GetValue(Stop) ?? [], parse.GetValue(Stats),
            parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error, parse.GetValue(Threads)));
        cmd.Subcommands.Add(GenerateBenchCommand.Create());
        cmd.Subcommands.Add(GenerateCheckCommand.Create());
        return cmd;
    }

    internal static InferenceDevice ParseDevice(string device) => device.ToLowerInvariant() switch
    {
        "cpu" => InferenceDevice.Cpu,
        "cuda" => InferenceDevice.Cuda,
        _ => throw new CliUsageException($"--device: '{device}' is not a device (use cpu or cuda)"),
    };

    internal static OnnxElementType ParseDType(string dtype) => dtype.ToLowerInvariant() switch
    {
        "float32" or "fp32" => OnnxElementType.Float,
        "float16" or "fp16" => OnnxElementType.Float16,
        "bfloat16" or "bf16" => OnnxElementType.BFloat16,
        _ => throw new CliUsageException($"--dtype: '{dtype}' is not a type (use float32, float16 or bfloat16)"),
    };

    /// <summary>
    /// The graph named by --graph, or null (the model's default for the device and type,
    /// <see cref="ILlamaSession.DefaultGraph(InferenceDevice, CycleQD.Tensors.LlamaConfig, OnnxElementType)"/>) when none is named.
    /// </summary>
    internal static LlamaGraphKind? ParseGraph(string? graph, InferenceDevice device, OnnxElementType elementType) => graph?.ToLowerInvariant() switch
    {
        null => null,
        "fused" when !FusedLlamaSession.SupportsElementType(device, elementType) => throw new CliUsageException(device == InferenceDevice.Cuda
            ? "--graph fused on --device cuda runs float16 or bfloat16 (ONNX Runtime's GroupQueryAttention has no float32 CUDA kernel): add --dtype bfloat16, or use --graph plain"
            : "--graph fused on --device cpu runs float32 or float16"),
        "fused" => LlamaGraphKind.Fused,
        "plain" => LlamaGraphKind.Plain,
        _ => throw new CliUsageException($"--graph: '{graph}' is not a graph (use fused or plain)"),
    };

    /// <summary>Why --threads is refused with --device cuda.</summary>
    internal const string CudaThreadsWhy = "with --device cuda the operators run on the GPU; ONNX Runtime's CPU threads apply to --device cpu";

    /// <summary>The provider, graph type and graph of --device, --dtype and --graph, checked together before a model opens.</summary>
    internal static (InferenceDevice Device, OnnxElementType ElementType, LlamaGraphKind? Graph) ParseRuntime(string device, string dtype, string? graph)
    {
        var dev = ParseDevice(device);
        var elementType = ParseDType(dtype);
        if (elementType == OnnxElementType.BFloat16 && dev == InferenceDevice.Cpu)
            throw new CliUsageException("--dtype bfloat16 needs --device cuda (the CPU provider has no bfloat16 kernels)");
        return (dev, elementType, ParseGraph(graph, dev, elementType));
    }

    internal static int Run(string? model, string? prompt, int maxNewTokens, double temperature, double topP, ulong seed, string device,
        string dtype, string? graph, bool chat, string[] stops, bool stats, TextWriter output, TextWriter error, int? threads = null)
    {
        if (string.IsNullOrEmpty(model)) throw new CliUsageException("--model is required (a Hugging Face model folder)");
        if (prompt is null) throw new CliUsageException("--prompt is required (use --prompt \"\" to start from BOS only)");
        if (maxNewTokens < 0) throw new CliUsageException($"--max-new-tokens: {maxNewTokens} is negative");
        if (temperature < 0 || double.IsNaN(temperature)) throw new CliUsageException($"--temperature: {temperature.ToString(CultureInfo.InvariantCulture)} must be ≥ 0");
        if (topP is <= 0 or > 1) throw new CliUsageException($"--top-p: {topP.ToString(CultureInfo.InvariantCulture)} must be in (0, 1]");
        var (dev, elementType, graphKind) = ParseRuntime(device, dtype, graph);
        if (dev != InferenceDevice.Cpu) ThreadsOption.Refuse(threads, CudaThreadsWhy);
        ModelKindCheck.Require(model, ModelFamilies.Llama, "generate");
        using var llm = LlamaModel.Open(model, dev, maxBatch: 1, intraOpThreads: threads ?? 0, elementType: elementType, graph: graphKind);
        bool addBos = true;
        if (chat)
        {
            var format = llm.ChatFormat ?? throw new CliUsageException(
                $"--chat: {llm.Folder.Directory} has no chat template the engine renders (chat_template.jinja or tokenizer_config.json \"chat_template\" in the Llama-3 or code-instruction format)");
            foreach (var missing in ChatTemplate.MissingSpecialTokens(format, llm.Tokenizer))
                error.WriteLine($"warning: --chat: the chat template's special token {missing} is not in the vocabulary of {llm.Tokenizer.Path}; it is split into ordinary tokens and the model will not read it as a turn marker");
            prompt = ChatTemplate.Render(format, [new ChatMessage("user", prompt)], addGenerationPrompt: true, bosToken: llm.Tokenizer.BosToken);
            addBos = format != ChatFormat.Llama3; // the Llama-3 template writes BOS as text
        }
        var request = new GenerationRequest(prompt, maxNewTokens, stops.Length > 0 ? stops : null, addBos, temperature, topP, seed);
        var result = llm.Generator.Generate([request]).Single();
        output.WriteLine(result.Text);
        if (stats && llm.Generator.LastStats is { } s)
            error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"prompt tokens {s.PromptTokens}, generated {s.GeneratedTokens} ({result.Finish}), {s.Seconds:F3} s, {s.TokensPerSecond:F1} tokens/s"));
        return 0;
    }
}
