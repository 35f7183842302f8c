namespace CycleQD.Onnx.Runtime;

/// <summary>
/// Batch decoding on the plain graph: prompts are left-padded, a key mask grows by one slot per
/// step, and each step's present cache becomes the next step's past.
/// </summary>
internal sealed class PlainBatchDecoder : IBatchDecoder
{
    private readonly LlamaSession _session;
    private readonly LlamaWeights _weights;
    private List<byte>[] _masks;
    private long[] _lengths;
    private KvCache _cache;

    public PlainBatchDecoder(LlamaSession session, LlamaWeights weights, int batch)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        _session = session;
        _weights = weights;
        _masks = new List<byte>[batch];
        _lengths = new long[batch];
        _cache = session.EmptyCache(batch);
    }

    public int Rows => _lengths.Length;

    public bool PicksGreedyTokens => _session.Options.LastPositionLogitsOnly;

    public float[] Prefill(IReadOnlyList<int[]> prompts) => PrefillInputs(prompts, greedy: false).Logits;

    public int[] PrefillGreedy(IReadOnlyList<int[]> prompts) => Tokens(PrefillInputs(prompts, greedy: true));

    public float[] Decode(ReadOnlySpan<int> tokens) => DecodeInputs(tokens, greedy: false).Logits;

    public int[] DecodeGreedy(ReadOnlySpan<int> tokens) => Tokens(DecodeInputs(tokens, greedy: true));

    private static int[] Tokens(LlamaStepResult step) => step.NextTokens!.Select(t => checked((int)t)).ToArray();

    private LlamaStepResult PrefillInputs(IReadOnlyList<int[]> prompts, bool greedy)
    {
        int batch = Rows;
        if (prompts.Count != batch) throw new ArgumentException($"{prompts.Count} prompts for a batch of {batch}");
        int len = prompts.Max(p => p.Length);
        var ids = new long[batch * len];
        var pos = new long[batch * len];
        var mask = new byte[batch * len];
        for (int b = 0; b < batch; b++)
        {
            if (prompts[b].Length == 0) throw new ArgumentException($"prompt {b} is empty");
            int pad = len - prompts[b].Length;
            _masks[b] = new List<byte>(len * 2);
            for (int i = 0; i < len; i++)
            {
                bool real = i >= pad;
                ids[b * len + i] = real ? prompts[b][i - pad] : 0;
                pos[b * len + i] = real ? i - pad : 0;
                mask[b * len + i] = real ? (byte)1 : (byte)0;
                _masks[b].Add(mask[b * len + i]);
            }
            _lengths[b] = prompts[b].Length;
        }
        return Step(ids, pos, mask, greedy);
    }

    private LlamaStepResult DecodeInputs(ReadOnlySpan<int> tokens, bool greedy)
    {
        int rows = Rows;
        if (tokens.Length != rows) throw new ArgumentException($"{tokens.Length} tokens for {rows} rows");
        var ids = new long[rows];
        var pos = new long[rows];
        for (int r = 0; r < rows; r++)
        {
            ids[r] = tokens[r];
            pos[r] = _lengths[r]++;
            _masks[r].Add(1);
        }
        int width = _masks[0].Count;
        var mask = new byte[rows * width];
        for (int r = 0; r < rows; r++) _masks[r].CopyTo(mask, r * width);
        return Step(ids, pos, mask, greedy);
    }

    /// <summary>One forward step; the result's logits are each row's last position only.</summary>
    private LlamaStepResult Step(long[] ids, long[] pos, byte[] mask, bool greedy)
    {
        var step = _session.Run(_weights, ids, pos, mask, Rows, _cache, greedy);
        _cache.Dispose();
        _cache = step.Cache;
        if (step.Positions == 1 || greedy) return step;
        int vocab = _session.Config.VocabSize, rows = Rows;
        var last = new float[rows * vocab];
        for (int r = 0; r < rows; r++)
            step.Logits.AsSpan((r * step.Positions + step.Positions - 1) * vocab, vocab).CopyTo(last.AsSpan(r * vocab));
        return step with { Logits = last, Positions = 1 };
    }

    public void KeepRows(IReadOnlyList<int> rows)
    {
        var smaller = _session.SelectRows(_cache, rows);
        _cache.Dispose();
        _cache = smaller;
        _masks = rows.Select(r => _masks[r]).ToArray();
        _lengths = rows.Select(r => _lengths[r]).ToArray();
    }

    public void Dispose() => _cache.Dispose();
}
