using System.Runtime.InteropServices;
using CycleQD.Onnx.Graph;
using CycleQD.Tensors;
using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Runtime;

/// <summary>
/// Batch decoding on the fused graph. Prompts are right-padded; each row keeps its own length, so no
/// padding ever enters the cache. The KV buffers ([rows, kv_heads, capacity, head_dim] per layer, in
/// the provider's memory: the GPU's on CUDA) are bound as both past input and present output, so
/// the attention operator (GroupQueryAttention, or CachedAttention on the CPU) writes each new
/// key/value in place. Weights, rotary tables and cache are bound once; a step rewrites the small
/// pinned host inputs and runs. The logits come back to the host, or,
/// for greedy steps, only each row's argmax (<see cref="LlamaGraphBuilder.NextTokens"/>) does and the
/// logits stay where they were computed.
/// </summary>
internal sealed class FusedBatchDecoder : IBatchDecoder
{
    private readonly FusedLlamaSession _session;
    private readonly OrtIoBinding _binding;
    private readonly RunOptions _runOptions, _prefillOptions;
    private readonly OrtValue _cos, _sin;
    private readonly int _capacity, _vocab;
    private readonly bool _rotaryInAttention;
    private OrtValue[] _keys, _values;
    private int[] _lengths;
    private bool _prefilled;

    // Per-step inputs and the fetched output, over pinned managed arrays bound for the current row count.
    private long[] _ids = [], _positions = [], _lastIndex = [];
    private int[] _seqLens = [];
    private readonly int[] _total = new int[1];
    private float[] _logits = [];
    private long[] _next = [];
    private OrtValue? _logitsValue, _nextValue;
    private readonly List<OrtValue> _stepValues = [];
    // The weight inputs made of several of the model's weights (FusedLlamaSession.PackedWeights), copied once per batch.
    private readonly List<OrtValue> _stacked = [];
    private readonly OrtValue _totalValue;
    // Which output the binding fetches: null before the first step, else whether it is next_tokens.
    private bool? _fetchesTokens;

    public FusedBatchDecoder(FusedLlamaSession session, LlamaWeights weights, int batch, int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _session = session;
        _runOptions = session.NewRunOptions(shrink: false);
        // A prompt's activations are the batch's largest and differ in size from batch to batch: the
        // prefill hands their regions back on CUDA; the decoding steps reuse theirs, of one size.
        _prefillOptions = session.NewRunOptions(shrink: true);
        _capacity = capacity;
        var c = session.Config;
        _vocab = c.VocabSize;
        _rotaryInAttention = FusedLlamaGraphBuilder.RotaryInAttention(c, session.Attention);
        _lengths = new int[batch];
        var t = session.Options.ElementType;
        var placement = session.Placement;
        var created = new List<IDisposable>();
        try
        {
            _binding = session.CreateBinding();
            created.Add(_binding);
            // The rotary tables go to the device once per batch, not with every step.
            var (cosHost, sinHost) = RotaryCaches(session.Rotary, capacity, t);
            using (cosHost)
            using (sinHost)
            {
                _cos = placement.Copy(cosHost, t, 2);
                created.Add(_cos);
                _sin = placement.Copy(sinHost, t, 2);
                created.Add(_sin);
            }
            _binding.BindInput(FusedLlamaGraphBuilder.CosCache, _cos);
            _binding.BindInput(FusedLlamaGraphBuilder.SinCache, _sin);
            foreach (var w in session.Weights) _binding.BindInput(w.Name, weights[w.Name]);
            foreach (var w in session.PackedWeights)
            {
                var stacked = Stack(w, weights);
                created.Add(stacked);
                _stacked.Add(stacked);
                _binding.BindInput(w.Name, stacked);
            }
            _totalValue = OrtValue.CreateTensorValueFromMemory(_total, []);
            created.Add(_totalValue);
            _binding.BindInput(FusedLlamaGraphBuilder.TotalSequenceLength, _totalValue);
            // Zero-filled: slots past a row's length are never attended, but stay finite.
            int layers = c.NumHiddenLayers;
            var buffers = placement.Zeros(t, [batch, c.NumKeyValueHeads, capacity, c.HeadDim], 2 * layers);
            created.AddRange(buffers);
            _keys = buffers[..layers];
            _values = buffers[layers..];
            BindCache();
        }
        catch
        {
            foreach (var d in created) d.Dispose();
            _runOptions.Dispose();
            _prefillOptions.Dispose();
            throw;
        }
    }

    public int Rows => _lengths.Length;

    public bool PicksGreedyTokens => true;

    public float[] Prefill(IReadOnlyList<int[]> prompts) => PrefillStep(prompts, tokens: false).Logits;

    public int[] PrefillGreedy(IReadOnlyList<int[]> prompts) => Tokens(PrefillStep(prompts, tokens: true).Next);

    public float[] Decode(ReadOnlySpan<int> tokens)
    {
        DecodeStep(tokens, fetchTokens: false);
        return _logits;
    }

    public int[] DecodeGreedy(ReadOnlySpan<int> tokens)
    {
        DecodeStep(tokens, fetchTokens: true);
        return Tokens(_next);
    }

    private static int[] Tokens(long[] next)
    {
        var tokens = new int[next.Length];
        for (int r = 0; r < tokens.Length; r++) tokens[r] = checked((int)next[r]);
        return tokens;
    }

    /// <summary>Runs the prompts; returns the arrays the run filled (the decoding steps get new ones).</summary>
    private (float[] Logits, long[] Next) PrefillStep(IReadOnlyList<int[]> prompts, bool tokens)
    {
        if (_prefilled) throw new InvalidOperationException("the batch was already prefilled");
        int rows = Rows;
        if (prompts.Count != rows) throw new ArgumentException($"{prompts.Count} prompts for a batch of {rows}");
        int len = prompts.Max(p => p.Length);
        if (len > _capacity) throw new ArgumentException($"a prompt of {len} tokens does not fit the batch's capacity of {_capacity}");
        // Both attention operators recognize a prompt by seq == total_sequence_length.
        _total[0] = len;
        var ids = new long[rows * len];
        var pos = new long[rows * len];
        var seqLens = new int[rows];
        var last = new long[rows];
        for (int r = 0; r < rows; r++)
        {
            int n = prompts[r].Length;
            if (n == 0) throw new ArgumentException($"prompt {r} is empty");
            for (int i = 0; i < n; i++)
            {
                ids[r * len + i] = prompts[r][i];
                pos[r * len + i] = i;
            }
            seqLens[r] = n - 1;
            last[r] = n - 1;
            _lengths[r] = n;
        }
        BindStep(ids, pos, seqLens, last, len);
        Run(tokens, _prefillOptions);
        _prefilled = true;
        var filled = (_logits, _next);
        // Later steps take one token per row.
        BindStep(new long[rows], new long[rows], new int[rows], new long[rows], 1);
        return filled;
    }

    private void DecodeStep(ReadOnlySpan<int> tokens, bool fetchTokens)
    {
        if (!_prefilled) throw new InvalidOperationException("Prefill comes before Decode");
        int rows = Rows;
        if (tokens.Length != rows) throw new ArgumentException($"{tokens.Length} tokens for {rows} rows");
        int longest = 0;
        for (int r = 0; r < rows; r++)
        {
            int n = _lengths[r];
            if (n >= _capacity) throw new InvalidOperationException($"row {r} is full: {_capacity} tokens (the batch's capacity)");
            _ids[r] = tokens[r];
            _positions[r] = n;
            _seqLens[r] = n; // cached plus new tokens, minus one
            _lengths[r] = n + 1;
            longest = Math.Max(longest, n + 1);
        }
        _total[0] = longest;
        Run(fetchTokens, _runOptions);
    }

    /// <summary>One run, fetching either the logits or the greedy tokens into this step shape's array.</summary>
    private void Run(bool fetchTokens, RunOptions options)
    {
        BindOutputs(fetchTokens);
        _session.Run(_binding, options);
    }

    public void KeepRows(IReadOnlyList<int> rows)
    {
        if (rows.Count == 0) throw new ArgumentException("no rows selected");
        foreach (int r in rows)
            if (r < 0 || r >= Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"row {r} is outside the batch of {Rows}");
        int layers = _keys.Length;
        var selected = _session.Placement.GatherRows([.. _keys, .. _values], _session.Options.ElementType, 4, rows);
        DisposeCache();
        (_keys, _values) = (selected[..layers], selected[layers..]);
        _lengths = rows.Select(r => _lengths[r]).ToArray();
        BindCache();
        if (_prefilled) BindStep(new long[rows.Count], new long[rows.Count], new int[rows.Count], new long[rows.Count], 1);
    }

    private void BindCache()
    {
        for (int i = 0; i < _keys.Length; i++)
        {
            _binding.BindInput(LlamaGraphBuilder.PastName(i, false), _keys[i]);
            _binding.BindInput(LlamaGraphBuilder.PastName(i, true), _values[i]);
        }
        _fetchesTokens = null; // the outputs are bound again, with the new buffers, before the next run
    }

    /// <summary>
    /// Binds the outputs when what is fetched changed: each layer's cache buffer as its present output
    /// (the same tensor as the past input, so GroupQueryAttention shares it) and the fetched output over
    /// the array of the current step shape (created on first use; see <see cref="BindStep"/>).
    /// </summary>
    private void BindOutputs(bool fetchTokens)
    {
        if (_fetchesTokens == fetchTokens) return;
        int rows = Rows;
        _binding.ClearBoundOutputs();
        for (int i = 0; i < _keys.Length; i++)
        {
            _binding.BindOutput(LlamaGraphBuilder.PresentName(i, false), _keys[i]);
            _binding.BindOutput(LlamaGraphBuilder.PresentName(i, true), _values[i]);
        }
        if (fetchTokens)
        {
            if (_next.Length != rows)
            {
                _next = new long[rows];
                _nextValue = Own(OrtValue.CreateTensorValueFromMemory(_next, [rows, 1]));
            }
            _binding.BindOutput(LlamaGraphBuilder.NextTokens, _nextValue!);
        }
        else
        {
            if (_logits.Length != rows * _vocab)
            {
                _logits = new float[rows * _vocab];
                _logitsValue = Own(OrtValue.CreateTensorValueFromMemory(_logits, [rows, 1, _vocab]));
            }
            _binding.BindOutput(LlamaGraphBuilder.Logits, _logitsValue!);
        }
        _fetchesTokens = fetchTokens;
    }

    private OrtValue Own(OrtValue value)
    {
        _stepValues.Add(value);
        return value;
    }

    private void BindStep(long[] ids, long[] pos, int[] seqLens, long[] last, int seq)
    {
        foreach (var o in _stepValues) o.Dispose();
        _stepValues.Clear();
        int rows = seqLens.Length;
        (_ids, _positions, _seqLens, _lastIndex) = (ids, pos, seqLens, last);
        // New output arrays for the new shape: the arrays returned so far stay as they are.
        (_logits, _next, _logitsValue, _nextValue, _fetchesTokens) = ([], [], null, null, null);
        OrtValue Add(OrtValue o) => Own(o);
        _binding.BindInput(LlamaGraphBuilder.InputIds, Add(OrtValue.CreateTensorValueFromMemory(ids, [rows, seq])));
        // With the rotary inside attention, GroupQueryAttention takes the positions from seqlens_k.
        if (!_rotaryInAttention) _binding.BindInput(FusedLlamaGraphBuilder.PositionIds, Add(OrtValue.CreateTensorValueFromMemory(pos, [rows, seq])));
        _binding.BindInput(FusedLlamaGraphBuilder.SeqLensK, Add(OrtValue.CreateTensorValueFromMemory(seqLens, [rows])));
        _binding.BindInput(FusedLlamaGraphBuilder.LastTokenIndex, Add(OrtValue.CreateTensorValueFromMemory(last, [rows, 1])));
    }

    /// <summary>cos/sin of every position below <paramref name="capacity"/>, [capacity, head_dim/2] (the first half of <see cref="RotaryTables.Fill"/>'s rows).</summary>
    private static (OrtValue Cos, OrtValue Sin) RotaryCaches(RotaryTables rotary, int capacity, OnnxElementType t)
    {
        int d = rotary.HeadDim, half = d / 2;
        var positions = new long[capacity];
        for (int p = 0; p < capacity; p++) positions[p] = p;
        var cos = new float[capacity * d];
        var sin = new float[capacity * d];
        rotary.Fill(positions, cos, sin);
        var cosHalf = new float[capacity * half];
        var sinHalf = new float[capacity * half];
        for (int p = 0; p < capacity; p++)
        {
            cos.AsSpan(p * d, half).CopyTo(cosHalf.AsSpan(p * half));
            sin.AsSpan(p * d, half).CopyTo(sinHalf.AsSpan(p * half));
        }
        return (Tensor(cosHalf, [capacity, half], t), Tensor(sinHalf, [capacity, half], t));
    }

    private static OrtValue Tensor(float[] data, long[] shape, OnnxElementType t)
    {
        if (t == OnnxElementType.Float) return OrtValue.CreateTensorValueFromMemory(data, shape);
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, LlamaWeights.OrtType(t), shape);
        var dst = MemoryMarshal.Cast<byte, ushort>(value.GetTensorMutableRawData());
        for (int i = 0; i < data.Length; i++)
            dst[i] = t == OnnxElementType.Float16 ? BitConverter.HalfToUInt16Bits((Half)data[i]) : DTypeConversion.SingleToBF16(data[i]);
        return value;
    }

    private void DisposeCache()
    {
        foreach (var k in _keys) k.Dispose();
        foreach (var v in _values) v.Dispose();
    }

    /// <summary>The sources of <paramref name="spec"/> (host float32 tensors) one after the other in one new host tensor.</summary>
    private static OrtValue Stack(PackedWeightSpec spec, LlamaWeights weights)
    {
        long total = spec.Shape.Aggregate(1L, (a, b) => a * b);
        var data = GC.AllocateUninitializedArray<float>(checked((int)total));
        int offset = 0;
        foreach (string name in spec.Sources)
        {
            var source = weights[name].GetTensorDataAsSpan<float>();
            if (offset + source.Length > data.Length)
                throw new InvalidOperationException($"{spec.Name}: its sources hold more than its {total} values");
            source.CopyTo(data.AsSpan(offset));
            offset += source.Length;
        }
        if (offset != data.Length) throw new InvalidOperationException($"{spec.Name}: its sources hold {offset} of its {total} values");
        return OrtValue.CreateTensorValueFromMemory(data, spec.Shape);
    }

    public void Dispose()
    {
        DisposeCache();
        foreach (var o in _stacked) o.Dispose();
        foreach (var o in _stepValues) o.Dispose();
        _totalValue.Dispose();
        _cos.Dispose();
        _sin.Dispose();
        _binding.Dispose();
        _runOptions.Dispose();
        _prefillOptions.Dispose();
    }
}
