using CycleQD.Onnx.Graph;
using CycleQD.Tensors;
using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Runtime;

/// <summary>
/// One ONNX Runtime session of the fused Llama graph (<see cref="FusedLlamaGraphBuilder"/>) on the
/// CPU provider. Weights are graph inputs as in <see cref="LlamaSession"/>: one session serves every
/// weight set of the architecture. Decoding goes through <see cref="StartBatch"/>, whose KV buffers
/// GroupQueryAttention fills in place. Runs are serialized (one at a time per session).
/// </summary>
public sealed class FusedLlamaSession : ILlamaSession
{
    private readonly InferenceSession _session;
    private readonly object _runLock = new();
    private InferenceSession? _rowSelector;

    /// <inheritdoc />
    public LlamaConfig Config { get; }

    /// <inheritdoc />
    public LlamaGraphOptions Options { get; }

    /// <inheritdoc />
    public LlamaGraphKind Graph => LlamaGraphKind.Fused;

    /// <inheritdoc />
    public InferenceDevice Device => InferenceDevice.Cpu;

    /// <summary>Rotary frequencies of the config.</summary>
    internal RotaryTables Rotary { get; }

    /// <summary>The weights' names and shapes.</summary>
    internal IReadOnlyList<LlamaWeightSpec> Weights { get; }

    /// <summary>Builds the fused graph for <paramref name="config"/> and opens a CPU session.</summary>
    /// <param name="config">The architecture (validated here).</param>
    /// <param name="options">Graph options; must ask for last-position logits (the decoder's contract); Float or Float16.</param>
    /// <param name="device">Must be <see cref="InferenceDevice.Cpu"/>.</param>
    /// <param name="configPath">Names config.json in errors.</param>
    /// <param name="intraOpThreads">CPU threads for one operator (0 = ONNX Runtime's default).</param>
    /// <exception cref="TensorFormatException">the config cannot be represented.</exception>
    /// <exception cref="ArgumentException">a device other than the CPU, a BFloat16 graph, or full-sequence logits requested.</exception>
    public FusedLlamaSession(LlamaConfig config, LlamaGraphOptions options, InferenceDevice device = InferenceDevice.Cpu, string configPath = "config.json", int intraOpThreads = 0)
    {
        LlamaGraphBuilder.Validate(config, configPath);
        if (device != InferenceDevice.Cpu)
            throw new ArgumentException($"--graph fused: the fused graph is built and tested for the CPU provider only; use --graph plain with --device {device.ToString().ToLowerInvariant()}");
        if (options.ElementType == OnnxElementType.BFloat16)
            throw new ArgumentException("--graph fused: a BFloat16 graph needs the CUDA provider; the fused CPU graph runs Float and Float16");
        if (!options.LastPositionLogitsOnly)
            throw new ArgumentException("the fused session decodes batches and returns each row's last logits: build it with LastPositionLogitsOnly");
        if (!Supports(config))
            throw new TensorFormatException(configPath, null, $"head_dim {config.HeadDim}: ONNX Runtime's GroupQueryAttention needs a multiple of 8 (use --graph plain)");
        Config = config;
        Options = options;
        Rotary = new RotaryTables(config);
        Weights = LlamaWeightLayout.For(config);
        using var so = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (intraOpThreads > 0) so.IntraOpNumThreads = intraOpThreads;
        // Worker threads that spin between operators steal the cores the next operator needs when the
        // machine is shared or small: generation measured several times slower with spinning (docs/perf.md).
        so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        _session = new InferenceSession(FusedLlamaGraphBuilder.Build(config, options).ToModelBytes(), so);
    }

    /// <summary>Whether the fused graph can represent <paramref name="config"/>: ONNX Runtime's GroupQueryAttention needs head_dim a multiple of 8.</summary>
    public static bool Supports(LlamaConfig config) => config.HeadDim % 8 == 0;

    /// <inheritdoc />
    public IBatchDecoder StartBatch(LlamaWeights weights, int batch, int capacity)
    {
        if (weights.ElementType != Options.ElementType)
            throw new ArgumentException($"weights {weights.Source} are {weights.ElementType}; this session's graph is {Options.ElementType}");
        return new FusedBatchDecoder(this, weights, batch, capacity);
    }

    /// <summary>Runs the graph with <paramref name="binding"/>, one run at a time.</summary>
    internal void Run(OrtIoBinding binding, RunOptions runOptions)
    {
        lock (_runLock) _session.RunWithBinding(runOptions, binding);
    }

    /// <summary>A new IO binding of the main session.</summary>
    internal OrtIoBinding CreateBinding() => _session.CreateIoBinding();

    /// <summary>New KV buffers holding the sequences at <paramref name="rows"/> of <paramref name="keys"/>/<paramref name="values"/> (inputs not disposed).</summary>
    internal (OrtValue[] Keys, OrtValue[] Values) SelectRows(OrtValue[] keys, OrtValue[] values, IReadOnlyList<int> rows)
    {
        int layers = Config.NumHiddenLayers;
        lock (_runLock)
        {
            _rowSelector ??= BuildRowSelector();
            using var binding = _rowSelector.CreateIoBinding();
            using var index = OrtValue.CreateTensorValueFromMemory(rows.Select(r => (long)r).ToArray(), [rows.Count]);
            binding.BindInput("rows", index);
            for (int i = 0; i < layers; i++)
            {
                binding.BindInput($"k{i}", keys[i]);
                binding.BindInput($"v{i}", values[i]);
                binding.BindOutputToDevice($"k{i}_out", OrtMemoryInfo.DefaultInstance);
                binding.BindOutputToDevice($"v{i}_out", OrtMemoryInfo.DefaultInstance);
            }
            using var runOptions = new RunOptions();
            _rowSelector.RunWithBinding(runOptions, binding);
            var outs = binding.GetOutputValues().ToList();
            var k = new OrtValue[layers];
            var v = new OrtValue[layers];
            for (int i = 0; i < layers; i++) { k[i] = outs[2 * i]; v[i] = outs[2 * i + 1]; }
            return (k, v);
        }
    }

    private InferenceSession BuildRowSelector()
    {
        var g = new OnnxGraph("select_rows", LlamaGraphBuilder.Opset);
        var t = Options.ElementType;
        g.Input("rows", OnnxElementType.Int64, "n");
        int kvh = Config.NumKeyValueHeads, d = Config.HeadDim;
        for (int i = 0; i < Config.NumHiddenLayers; i++)
            foreach (string kv in new[] { "k", "v" })
            {
                g.Input($"{kv}{i}", t, "batch", kvh, "capacity", d);
                g.Node("Gather", [$"{kv}{i}", "rows"], [$"{kv}{i}_out"], ("axis", 0L));
                g.Output($"{kv}{i}_out", $"{kv}{i}_out", t, "n", kvh, "capacity", d);
            }
        return new InferenceSession(g.ToModelBytes());
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _session.Dispose();
        _rowSelector?.Dispose();
    }
}
