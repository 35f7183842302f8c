using System.Diagnostics;
using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Runtime;
using CycleQD.Onnx.Tokenization;

namespace CycleQD.Onnx.Generation;

/// <summary>Throughput of the last <see cref="LlamaGenerator.Generate"/> call.</summary>
/// <param name="Sequences">Requests served.</param>
/// <param name="PromptTokens">Prompt tokens processed (without padding).</param>
/// <param name="GeneratedTokens">Tokens generated (EOS tokens included).</param>
/// <param name="Seconds">Wall time of the whole call.</param>
public sealed record GenerationStats(int Sequences, long PromptTokens, long GeneratedTokens, double Seconds)
{
    /// <summary>Generated tokens per second of wall time.</summary>
    public double TokensPerSecond => Seconds > 0 ? GeneratedTokens / Seconds : 0;
}

/// <summary>
/// Batched autoregressive generation with one <see cref="ILlamaSession"/> (plain or fused graph) and
/// one bound weight set: requests are sorted by prompt length, cut into batches, prefilled in one run
/// and then decoded one token per run with the KV cache (see <see cref="IBatchDecoder"/>). Greedy (temperature 0) or sampled with
/// temperature and top-p from a per-request seed. Not thread-safe: one call at a time.
/// </summary>
public sealed class LlamaGenerator : ITextGenerator
{
    private readonly ILlamaSession _session;
    private readonly LlamaWeights _weights;
    private readonly HashSet<int> _eos;

    /// <summary>The tokenizer used for prompts and continuations.</summary>
    public TextTokenizer Tokenizer { get; }

    /// <summary>Most sequences per batch.</summary>
    public int MaxBatch { get; }

    /// <summary>Token ids that end a sequence.</summary>
    public IReadOnlyCollection<int> EosIds => _eos;

    /// <summary>Throughput of the last call, or null before the first.</summary>
    public GenerationStats? LastStats { get; private set; }

    /// <summary>Generates with <paramref name="session"/> and <paramref name="weights"/> (neither is owned).</summary>
    public LlamaGenerator(ILlamaSession session, LlamaWeights weights, TextTokenizer tokenizer, IEnumerable<int> eosIds, int maxBatch = 64)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        _session = session;
        _weights = weights;
        Tokenizer = tokenizer;
        _eos = [.. eosIds];
        MaxBatch = maxBatch;
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, CancellationToken cancellationToken = default) =>
        Task.Run(() => Generate(requests, cancellationToken), cancellationToken);

    /// <summary>Generates a continuation for every request, in request order.</summary>
    /// <exception cref="ArgumentException">a request with no tokens at all (empty prompt without BOS) or a bad option.</exception>
    public IReadOnlyList<GenerationResult> Generate(IReadOnlyList<GenerationRequest> requests, CancellationToken cancellationToken = default)
    {
        var sw = Stopwatch.StartNew();
        var prompts = new int[requests.Count][];
        for (int r = 0; r < requests.Count; r++)
        {
            var q = requests[r];
            if (q.MaxNewTokens < 0) throw new ArgumentException($"request {r}: MaxNewTokens is negative");
            if (q.Temperature < 0 || double.IsNaN(q.Temperature)) throw new ArgumentException($"request {r}: Temperature must be ≥ 0");
            if (q.TopP is <= 0 or > 1) throw new ArgumentException($"request {r}: TopP must be in (0, 1]");
            var ids = new List<int>();
            if (q.AddBos && Tokenizer.BosId is int bos) ids.Add(bos);
            ids.AddRange(Tokenizer.Encode(q.Prompt));
            if (ids.Count == 0) throw new ArgumentException($"request {r}: the prompt is empty and no BOS token is added: nothing to condition on");
            prompts[r] = [.. ids];
        }
        var results = new GenerationResult[requests.Count];
        long generated = 0;
        var order = Enumerable.Range(0, requests.Count).OrderBy(r => prompts[r].Length).ToArray();
        for (int start = 0; start < order.Length; start += MaxBatch)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var chunk = order[start..Math.Min(order.Length, start + MaxBatch)];
            var outs = GenerateBatch(chunk.Select(r => prompts[r]).ToArray(), chunk.Select(r => requests[r]).ToArray(), cancellationToken);
            for (int i = 0; i < chunk.Length; i++)
            {
                results[chunk[i]] = outs[i];
                generated += outs[i].TokenIds.Count;
            }
        }
        LastStats = new GenerationStats(requests.Count, prompts.Sum(p => (long)p.Length), generated, sw.Elapsed.TotalSeconds);
        return results;
    }

    private GenerationResult[] GenerateBatch(int[][] prompts, GenerationRequest[] requests, CancellationToken ct)
    {
        int batch = prompts.Length, len = prompts.Max(p => p.Length), vocab = _session.Config.VocabSize;
        int maxNew = requests.Max(r => r.MaxNewTokens);
        var generated = new List<int>[batch];
        var finish = new GenerationFinish?[batch];
        var texts = new string?[batch];
        var rngs = new Random?[batch];
        for (int b = 0; b < batch; b++)
        {
            generated[b] = [];
            if (requests[b].MaxNewTokens == 0) finish[b] = GenerationFinish.Length;
            if (requests[b].Temperature > 0) rngs[b] = new Random(unchecked((int)(requests[b].Seed ^ (requests[b].Seed >> 32))));
        }
        var results = new GenerationResult[batch];
        if (maxNew == 0)
        {
            for (int b = 0; b < batch; b++) results[b] = new GenerationResult("", [], GenerationFinish.Length);
            return results;
        }

        // Capacity: the longest prompt plus the most tokens any request may add.
        using var decoder = _session.StartBatch(_weights, batch, len + maxNew);
        float[] logitsAll = decoder.Prefill(prompts);
        // rows[r] is the sequence in decoder row r; finished sequences are dropped from the batch.
        int[] rows = Enumerable.Range(0, batch).ToArray();
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            var keep = new List<int>(rows.Length);
            for (int r = 0; r < rows.Length; r++)
            {
                int b = rows[r];
                if (finish[b] == null)
                {
                    var logits = logitsAll.AsSpan(r * vocab, vocab);
                    int token = requests[b].Temperature > 0 ? Sample(logits, requests[b].Temperature, requests[b].TopP, rngs[b]!) : ArgMax(logits);
                    generated[b].Add(token);
                    if (_eos.Contains(token)) finish[b] = GenerationFinish.Eos;
                    else if (requests[b].StopStrings is { Count: > 0 } stops && CutAtStop(prompts[b], generated[b], stops) is string cut)
                    {
                        finish[b] = GenerationFinish.Stop;
                        texts[b] = cut;
                    }
                    else if (generated[b].Count >= requests[b].MaxNewTokens) finish[b] = GenerationFinish.Length;
                }
                if (finish[b] == null) keep.Add(r);
            }
            if (keep.Count == 0) break;
            if (keep.Count < rows.Length)
            {
                decoder.KeepRows(keep);
                rows = keep.Select(r => rows[r]).ToArray();
            }
            var next = new int[rows.Length];
            for (int r = 0; r < rows.Length; r++) next[r] = generated[rows[r]][^1];
            logitsAll = decoder.Decode(next);
        }
        for (int b = 0; b < batch; b++)
        {
            var gen = generated[b];
            string text = texts[b] ?? Tokenizer.DecodeContinuation(prompts[b], finish[b] == GenerationFinish.Eos ? gen[..^1] : gen);
            results[b] = new GenerationResult(text, gen, finish[b]!.Value);
        }
        return results;
    }

    private string? CutAtStop(int[] prompt, List<int> generated, IReadOnlyList<string> stops)
    {
        string text = Tokenizer.DecodeContinuation(prompt, generated);
        int best = -1;
        foreach (var s in stops)
        {
            if (s.Length == 0) continue;
            int i = text.IndexOf(s, StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best)) best = i;
        }
        return best >= 0 ? text[..best] : null;
    }

    /// <summary>Index of the largest logit (the first one on ties).</summary>
    internal static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    /// <summary>Draws from softmax(logits / temperature) restricted to the smallest set of top tokens whose mass reaches topP.</summary>
    internal static int Sample(ReadOnlySpan<float> logits, double temperature, double topP, Random rng)
    {
        int n = logits.Length;
        double max = double.NegativeInfinity;
        foreach (float l in logits) max = Math.Max(max, l);
        var probs = new double[n];
        double sum = 0;
        for (int i = 0; i < n; i++) { probs[i] = Math.Exp((logits[i] - max) / temperature); sum += probs[i]; }
        var idx = Enumerable.Range(0, n).ToArray();
        Array.Sort(idx, (a, b) => probs[b].CompareTo(probs[a]) is int c && c != 0 ? c : a.CompareTo(b));
        int keep = n;
        if (topP < 1)
        {
            double acc = 0;
            for (int k = 0; k < n; k++)
            {
                acc += probs[idx[k]] / sum;
                if (acc >= topP) { keep = k + 1; break; }
            }
        }
        double kept = 0;
        for (int k = 0; k < keep; k++) kept += probs[idx[k]];
        double u = rng.NextDouble() * kept;
        for (int k = 0; k < keep; k++)
        {
            u -= probs[idx[k]];
            if (u < 0) return idx[k];
        }
        return idx[keep - 1];
    }
}
