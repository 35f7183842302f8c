using CycleQD.Onnx.Graph;
using CycleQD.Tensors;
using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Runtime;

/// <summary>
/// One ONNX Runtime session of the plain Llama graph (<see cref="LlamaGraphKind.Plain"/>). The weights are graph inputs, so any
/// <see cref="LlamaWeights"/> of this config can be bound per call; switching candidates rebuilds
/// nothing. Runs are serialized (one at a time per session).
/// </summary>
public sealed class LlamaSession : ILlamaSession
{
    private readonly InferenceSession _session;
    private readonly IReadOnlyList<LlamaWeightSpec> _weights;
    private readonly RotaryTables _rotary;
    private readonly object _runLock = new();

    /// <summary>The architecture.</summary>
    public LlamaConfig Config { get; }

    /// <summary>How the graph was built.</summary>
    public LlamaGraphOptions Options { get; }

    /// <summary>Execution provider in use.</summary>
    public InferenceDevice Device { get; }

    /// <inheritdoc />
    public LlamaGraphKind Graph => LlamaGraphKind.Plain;

    /// <inheritdoc />
    public IBatchDecoder StartBatch(LlamaWeights weights, int batch, int capacity) => new PlainBatchDecoder(this, weights, batch);

    /// <summary>Size of the serialized graph (bytes; no weights inside).</summary>
    public int GraphBytes { get; }

    /// <summary>Builds the graph for <paramref name="config"/> and opens a session on <paramref name="device"/>.</summary>
    /// <param name="config">The architecture (validated here).</param>
    /// <param name="options">Graph options; BFloat16 graphs need the CUDA provider.</param>
    /// <param name="device">Execution provider.</param>
    /// <param name="configPath">Names config.json in errors.</param>
    /// <param name="intraOpThreads">CPU threads for one operator (0 = ONNX Runtime's default).</param>
    /// <exception cref="TensorFormatException">the config cannot be represented.</exception>
    /// <param name="cudaDevice">The GPU (CUDA ordinal) of the CUDA provider.</param>
    /// <exception cref="ExecutionProviderUnavailableException">the CUDA provider cannot load.</exception>
    public LlamaSession(LlamaConfig config, LlamaGraphOptions options, InferenceDevice device = InferenceDevice.Cpu, string configPath = "config.json", int intraOpThreads = 0,
        int cudaDevice = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cudaDevice);
        CudaDevice = cudaDevice;
        LlamaGraphBuilder.Validate(config, configPath);
        // ONNX Runtime's CPU provider runs a float16 graph by inserting casts around operators that lack
        // float16 kernels (slow, but it checks the graph); it has no such fallback for bfloat16.
        if (device == InferenceDevice.Cpu && options.ElementType == OnnxElementType.BFloat16)
            throw new ArgumentException("a BFloat16 graph needs the CUDA provider; the CPU provider runs Float and Float16 graphs");
        Config = config;
        Options = options;
        Device = device;
        _weights = LlamaWeightLayout.For(config);
        _rotary = new RotaryTables(config);
        byte[] model = LlamaGraphBuilder.Build(config, options).ToModelBytes();
        GraphBytes = model.Length;
        using var so = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (intraOpThreads > 0) so.IntraOpNumThreads = intraOpThreads;
        // Worker threads that spin between operators steal the cores the next operator needs when the
        // machine is shared or small: generation measured several times slower with spinning (docs/perf.md).
        so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        if (device == InferenceDevice.Cuda) CudaProvider.Append(so, cudaDevice);
        _session = new InferenceSession(model, so);
        _placement = new DevicePlacement(device, cudaDevice);
        _cacheMemory = _placement.Memory;
    }

    // Row selection where the cache lives.
    private readonly DevicePlacement _placement;

    /// <summary>The GPU (CUDA ordinal) the CUDA provider runs on; 0 on the CPU provider.</summary>
    public int CudaDevice { get; }

    // Where present key/values are written: on the device that computes them, so the cache never
    // round-trips through host memory between steps on CUDA.
    private readonly OrtMemoryInfo _cacheMemory;

    /// <summary>Shared libraries ONNX Runtime's CUDA provider loads (its NEEDED entries, plus cuDNN which it opens at run time).</summary>
    public static IReadOnlyList<string> CudaProviderLibraries => CudaProvider.Libraries;

    /// <summary>An empty cache (no positions) for <paramref name="batch"/> sequences, to start a prefill.</summary>
    public KvCache EmptyCache(int batch)
    {
        int layers = Config.NumHiddenLayers;
        long[] keyShape = [batch, Config.NumKeyValueHeads, Config.HeadDim, 0];
        long[] valueShape = [batch, Config.NumKeyValueHeads, 0, Config.HeadDim];
        var keys = new OrtValue[layers];
        var values = new OrtValue[layers];
        for (int i = 0; i < layers; i++)
        {
            keys[i] = HostTensor([], keyShape);
            values[i] = HostTensor([], valueShape);
        }
        return new KvCache(keys, values, batch, 0);
    }

    /// <summary>
    /// Runs one step: <paramref name="inputIds"/> [batch, seq] tokens at <paramref name="positions"/>
    /// [batch, seq] after <paramref name="past"/>; <paramref name="keyMask"/> [batch, past+seq] is 1
    /// for real tokens and 0 for padding. Queries attend to unmasked keys at or before their slot.
    /// </summary>
    /// <param name="weights">The weights to bind for this run.</param>
    /// <param name="inputIds">Token ids, row-major [batch, seq].</param>
    /// <param name="positions">Rotary position of each token, row-major [batch, seq].</param>
    /// <param name="keyMask">1/0 per cached+new slot, row-major [batch, past.Length + seq].</param>
    /// <param name="batch">Batch size (must equal past.Batch).</param>
    /// <param name="past">The cache from the previous step; not disposed here.</param>
    public LlamaStepResult Run(LlamaWeights weights, ReadOnlySpan<long> inputIds, ReadOnlySpan<long> positions, ReadOnlySpan<byte> keyMask, int batch, KvCache past) =>
        Run(weights, inputIds, positions, keyMask, batch, past, greedyTokensOnly: false);

    /// <summary>
    /// As <see cref="Run(LlamaWeights, ReadOnlySpan{long}, ReadOnlySpan{long}, ReadOnlySpan{byte}, int, KvCache)"/>; with
    /// <paramref name="greedyTokensOnly"/> (last-position-only graphs) the logits stay where they were computed (on the
    /// GPU with the CUDA provider) and only each sequence's greedy next token comes back (<see cref="LlamaStepResult.NextTokens"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">greedy tokens asked of a graph that returns every position's logits.</exception>
    public LlamaStepResult Run(LlamaWeights weights, ReadOnlySpan<long> inputIds, ReadOnlySpan<long> positions, ReadOnlySpan<byte> keyMask, int batch, KvCache past,
        bool greedyTokensOnly)
    {
        if (greedyTokensOnly && !Options.LastPositionLogitsOnly)
            throw new InvalidOperationException("greedy tokens come from a last-position-only graph; this one returns every position's logits");
        if (batch <= 0 || inputIds.Length % batch != 0) throw new ArgumentException("inputIds is not [batch, seq]");
        int seq = inputIds.Length / batch, total = past.Length + seq, d = Config.HeadDim;
        if (past.Batch != batch) throw new ArgumentException($"cache holds {past.Batch} sequences, batch is {batch}");
        if (positions.Length != inputIds.Length) throw new ArgumentException("positions must be [batch, seq]");
        if (keyMask.Length != batch * total) throw new ArgumentException($"keyMask must be [batch, {total}]");
        foreach (long id in inputIds)
            if (id < 0 || id >= Config.VocabSize) throw new ArgumentOutOfRangeException(nameof(inputIds), $"token id {id} is outside the vocabulary (0..{Config.VocabSize - 1})");

        var cos = new float[inputIds.Length * d];
        var sin = new float[inputIds.Length * d];
        _rotary.Fill(positions, cos, sin);
        var bias = new float[batch * seq * total];
        float maskedScore = Options.ElementType == OnnxElementType.Float16 ? MaskedScoreHalf : MaskedScore;
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < seq; i++)
            {
                int slot = past.Length + i;
                var row = bias.AsSpan((b * seq + i) * total, total);
                for (int j = 0; j < total; j++)
                    row[j] = j <= slot && keyMask[b * total + j] != 0 ? 0f : maskedScore;
            }

        if (weights.ElementType != Options.ElementType)
            throw new ArgumentException($"weights {weights.Source} are {weights.ElementType}; this session's graph is {Options.ElementType}");
        int layers = Config.NumHiddenLayers;
        var owned = new List<OrtValue>(4);
        try
        {
            using var binding = _session.CreateIoBinding();
            void Own(string name, OrtValue value) { owned.Add(value); binding.BindInput(name, value); }
            Own(LlamaGraphBuilder.InputIds, OrtValue.CreateTensorValueFromMemory(inputIds.ToArray(), [batch, seq]));
            Own(LlamaGraphBuilder.RopeCos, HostTensor(cos, [batch, seq, d]));
            Own(LlamaGraphBuilder.RopeSin, HostTensor(sin, [batch, seq, d]));
            Own(LlamaGraphBuilder.AttentionBias, HostTensor(bias, [batch, 1, seq, total]));
            for (int i = 0; i < layers; i++)
            {
                binding.BindInput(LlamaGraphBuilder.PastName(i, false), past.Keys[i]);
                binding.BindInput(LlamaGraphBuilder.PastName(i, true), past.Values[i]);
            }
            foreach (var w in _weights) binding.BindInput(w.Name, weights[w.Name]);
            // Greedy steps leave the logits on the device that computed them and fetch the argmax only.
            binding.BindOutputToDevice(LlamaGraphBuilder.Logits, greedyTokensOnly ? _cacheMemory : OrtMemoryInfo.DefaultInstance);
            for (int i = 0; i < layers; i++)
            {
                binding.BindOutputToDevice(LlamaGraphBuilder.PresentName(i, false), _cacheMemory);
                binding.BindOutputToDevice(LlamaGraphBuilder.PresentName(i, true), _cacheMemory);
            }
            if (greedyTokensOnly) binding.BindOutputToDevice(LlamaGraphBuilder.NextTokens, OrtMemoryInfo.DefaultInstance);
            lock (_runLock)
            {
                // The cache grows by one position a step, so no earlier step's region fits the new one:
                // on CUDA each run hands the emptied regions back instead of keeping every step's.
                using var runOptions = CudaProvider.NewRunOptions(Device, CudaDevice, shrink: true);
                _session.RunWithBinding(runOptions, binding);
            }
            // Not disposed as a collection: the cache tensors move into the KvCache, which owns them.
            var outList = binding.GetOutputValues().ToList();
            float[] logits = greedyTokensOnly ? [] : outList[0].GetTensorDataAsSpan<float>().ToArray();
            outList[0].Dispose();
            long[]? next = null;
            if (greedyTokensOnly)
            {
                next = outList[^1].GetTensorDataAsSpan<long>().ToArray();
                outList[^1].Dispose();
            }
            var keys = new OrtValue[layers];
            var values = new OrtValue[layers];
            for (int i = 0; i < layers; i++) { keys[i] = outList[1 + 2 * i]; values[i] = outList[2 + 2 * i]; }
            return new LlamaStepResult(logits, Options.LastPositionLogitsOnly ? 1 : seq, new KvCache(keys, values, batch, total), next);
        }
        finally
        {
            foreach (var o in owned) o.Dispose();
        }
    }

    /// <summary>A host tensor of the graph's element type from float32 values (converted for half-precision graphs).</summary>
    private OrtValue HostTensor(float[] data, long[] shape)
    {
        var t = Options.ElementType;
        if (t == OnnxElementType.Float) return OrtValue.CreateTensorValueFromMemory(data, shape);
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, LlamaWeights.OrtType(t), shape);
        var dst = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(value.GetTensorMutableRawData());
        for (int i = 0; i < data.Length; i++)
            dst[i] = t == OnnxElementType.Float16 ? BitConverter.HalfToUInt16Bits((Half)data[i]) : DTypeConversion.SingleToBF16(data[i]);
        return value;
    }

    /// <summary>Additive score for a masked key: large enough to zero its weight, finite so that a fully masked (padding) row stays finite.</summary>
    private const float MaskedScore = -1e9f;

    /// <summary>Float16 tops out at 65504: a masked score that stays finite after adding a logit.</summary>
    private const float MaskedScoreHalf = -3e4f;

    /// <inheritdoc />
    public void Dispose()
    {
        _session.Dispose();
        _placement.Dispose();
    }

    /// <summary>
    /// A cache holding only the sequences at <paramref name="rows"/> (indices into
    /// <paramref name="cache"/>'s batch, in the new order), computed where the cache lives. Lets a
    /// batch drop finished sequences instead of computing them to the end. The input is not disposed.
    /// </summary>
    public KvCache SelectRows(KvCache cache, IReadOnlyList<int> rows)
    {
        if (rows.Count == 0) throw new ArgumentException("no rows selected");
        foreach (int r in rows)
            if (r < 0 || r >= cache.Batch) throw new ArgumentOutOfRangeException(nameof(rows), $"row {r} is outside the batch of {cache.Batch}");
        int layers = Config.NumHiddenLayers;
        var selected = _placement.GatherRows([.. cache.Keys, .. cache.Values], Options.ElementType, 4, rows);
        return new KvCache(selected[..layers], selected[layers..], rows.Count, cache.Length);
    }
}
