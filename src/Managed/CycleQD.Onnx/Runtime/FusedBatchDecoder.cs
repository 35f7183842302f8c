using System.Runtime.InteropServices;
using CycleQD.Onnx.Graph;
using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Runtime;

/// <summary>
/// Batch decoding on the fused graph. Prompts are right-padded; each row keeps its own length, so no
/// padding ever enters the cache. The KV buffers ([rows, kv_heads, capacity, head_dim] per layer) are
/// bound as both past input and present output, so GroupQueryAttention writes each new key/value in
/// place. Weights, rotary tables, cache and the small per-step inputs are bound once; a decoding
/// step rewrites the pinned input arrays and runs.
/// </summary>
internal sealed class FusedBatchDecoder : IBatchDecoder
{
    private readonly FusedLlamaSession _session;
    private readonly OrtIoBinding _binding;
    private readonly RunOptions _runOptions = new();
    private readonly OrtValue _cos, _sin;
    private readonly int _capacity, _vocab;
    private OrtValue[] _keys, _values;
    private int[] _lengths;
    private bool _prefilled;

    // Per-step inputs and the logits output, over pinned managed arrays bound for the current row count.
    private long[] _ids = [], _positions = [], _lastIndex = [];
    private int[] _seqLens = [];
    private readonly int[] _total = new int[1];
    private float[] _logits = [];
    private readonly List<OrtValue> _stepValues = [];
    private readonly OrtValue _totalValue;

    public FusedBatchDecoder(FusedLlamaSession session, LlamaWeights weights, int batch, int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _session = session;
        _capacity = capacity;
        var c = session.Config;
        _vocab = c.VocabSize;
        _lengths = new int[batch];
        _binding = session.CreateBinding();
        var t = session.Options.ElementType;
        (_cos, _sin) = RotaryCaches(session.Rotary, capacity, t);
        _binding.BindInput(FusedLlamaGraphBuilder.CosCache, _cos);
        _binding.BindInput(FusedLlamaGraphBuilder.SinCache, _sin);
        foreach (var w in session.Weights) _binding.BindInput(w.Name, weights[w.Name]);
        _totalValue = OrtValue.CreateTensorValueFromMemory(_total, []);
        _binding.BindInput(FusedLlamaGraphBuilder.TotalSequenceLength, _totalValue);
        _keys = new OrtValue[c.NumHiddenLayers];
        _values = new OrtValue[c.NumHiddenLayers];
        long[] shape = [batch, c.NumKeyValueHeads, capacity, c.HeadDim];
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            _keys[i] = Zeroed(shape, t);
            _values[i] = Zeroed(shape, t);
        }
        BindCache();
    }

    public int Rows => _lengths.Length;

    public float[] Prefill(IReadOnlyList<int[]> prompts)
    {
        if (_prefilled) throw new InvalidOperationException("the batch was already prefilled");
        int rows = Rows;
        if (prompts.Count != rows) throw new ArgumentException($"{prompts.Count} prompts for a batch of {rows}");
        int len = prompts.Max(p => p.Length);
        if (len > _capacity) throw new ArgumentException($"a prompt of {len} tokens does not fit the batch's capacity of {_capacity}");
        // ONNX Runtime's GroupQueryAttention recognizes a prompt by seq == total_sequence_length.
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
        _session.Run(_binding, _runOptions);
        _prefilled = true;
        var logits = _logits;
        // Later steps take one token per row (and write the next logits into a new array).
        BindStep(new long[rows], new long[rows], new int[rows], new long[rows], 1);
        return logits;
    }

    public float[] Decode(ReadOnlySpan<int> tokens)
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
        _session.Run(_binding, _runOptions);
        return _logits;
    }

    public void KeepRows(IReadOnlyList<int> rows)
    {
        if (rows.Count == 0) throw new ArgumentException("no rows selected");
        foreach (int r in rows)
            if (r < 0 || r >= Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"row {r} is outside the batch of {Rows}");
        var (k, v) = _session.SelectRows(_keys, _values, rows);
        DisposeCache();
        (_keys, _values) = (k, v);
        _lengths = rows.Select(r => _lengths[r]).ToArray();
        BindCache();
        if (_prefilled) BindStep(new long[rows.Count], new long[rows.Count], new int[rows.Count], new long[rows.Count], 1);
    }

    private void BindCache()
    {
        for (int i = 0; i < _keys.Length; i++)
        {
            // The same tensor as past input and present output: GroupQueryAttention then shares the buffer.
            _binding.BindInput(LlamaGraphBuilder.PastName(i, false), _keys[i]);
            _binding.BindInput(LlamaGraphBuilder.PastName(i, true), _values[i]);
            _binding.BindOutput(LlamaGraphBuilder.PresentName(i, false), _keys[i]);
            _binding.BindOutput(LlamaGraphBuilder.PresentName(i, true), _values[i]);
        }
    }

    private void BindStep(long[] ids, long[] pos, int[] seqLens, long[] last, int seq)
    {
        foreach (var o in _stepValues) o.Dispose();
        _stepValues.Clear();
        int rows = seqLens.Length;
        (_ids, _positions, _seqLens, _lastIndex) = (ids, pos, seqLens, last);
        _logits = new float[rows * _vocab];
        OrtValue Add(OrtValue o) { _stepValues.Add(o); return o; }
        _binding.BindInput(LlamaGraphBuilder.InputIds, Add(OrtValue.CreateTensorValueFromMemory(ids, [rows, seq])));
        _binding.BindInput(FusedLlamaGraphBuilder.PositionIds, Add(OrtValue.CreateTensorValueFromMemory(pos, [rows, seq])));
        _binding.BindInput(FusedLlamaGraphBuilder.SeqLensK, Add(OrtValue.CreateTensorValueFromMemory(seqLens, [rows])));
        _binding.BindInput(FusedLlamaGraphBuilder.LastTokenIndex, Add(OrtValue.CreateTensorValueFromMemory(last, [rows, 1])));
        _binding.BindOutput(LlamaGraphBuilder.Logits, Add(OrtValue.CreateTensorValueFromMemory(_logits, [rows, 1, _vocab])));
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
        var dst = MemoryMarshal.Cast<byte, Half>(value.GetTensorMutableRawData());
        for (int i = 0; i < data.Length; i++) dst[i] = (Half)data[i];
        return value;
    }

    /// <summary>A zero-filled cache buffer: slots past a row's length are never attended, but stay finite.</summary>
    private static OrtValue Zeroed(long[] shape, OnnxElementType t)
    {
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, LlamaWeights.OrtType(t), shape);
        value.GetTensorMutableRawData().Clear();
        return value;
    }

    private void DisposeCache()
    {
        foreach (var k in _keys) k.Dispose();
        foreach (var v in _values) v.Dispose();
    }

    public void Dispose()
    {
        DisposeCache();
        foreach (var o in _stepValues) o.Dispose();
        _totalValue.Dispose();
        _cos.Dispose();
        _sin.Dispose();
        _binding.Dispose();
        _runOptions.Dispose();
    }
}
