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
/// <remarks>
/// With several sessions (<em>lanes</em>, each its own CPU thread), the requests are cut into at
/// least as many batches as there are lanes, of near-equal size, and each lane decodes its batches
/// on its own thread: on a small model a decoding step's operators are too small to share among
/// threads, and batches side by side keep every core busy instead (docs/perf.md). A sequence's
/// output does not depend on the batch it is in.
/// </remarks>
public sealed class LlamaGenerator : ITextGenerator
{
    private readonly IReadOnlyList<ILlamaSession> _lanes;
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

    /// <summary>Sessions that decode batches side by side, one thread each (the first is the main session).</summary>
    public int Lanes => _lanes.Count;

    /// <summary>Generates with <paramref name="session"/> and <paramref name="weights"/> (neither is owned).</summary>
    public LlamaGenerator(ILlamaSession session, LlamaWeights weights, TextTokenizer tokenizer, IEnumerable<int> eosIds, int maxBatch = 64)
        : this([session], weights, tokenizer, eosIds, maxBatch)
    {
    }

    /// <summary>
    /// A generator of <paramref name="weights"/> on <paramref name="lanes"/>: sessions of one graph
    /// that decode different batches at the same time, each on its own thread (none is owned).
    /// </summary>
    /// <exception cref="ArgumentException">no session, or sessions of different architectures, graphs or devices.</exception>
    public static LlamaGenerator OnLanes(IReadOnlyList<ILlamaSession> lanes, LlamaWeights weights, TextTokenizer tokenizer, IEnumerable<int> eosIds, int maxBatch = 64) =>
        new(lanes, weights, tokenizer, eosIds, maxBatch);

    private LlamaGenerator(IReadOnlyList<ILlamaSession> lanes, LlamaWeights weights, TextTokenizer tokenizer, IEnumerable<int> eosIds, int maxBatch)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        if (lanes.Count == 0) throw new ArgumentException("at least one session", nameof(lanes));
        foreach (var lane in lanes)
            if (lane.Config != lanes[0].Config || lane.Graph != lanes[0].Graph || lane.Device != lanes[0].Device || lane.Options != lanes[0].Options)
                throw new ArgumentException("the lanes must be sessions of one architecture, graph, element type and device", nameof(lanes));
        _lanes = [.. lanes];
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
            if (q.MaxModelLen is < 1) throw new ArgumentException($"request {r}: MaxModelLen must be ≥ 1");
            prompts[r] = EncodePrompt(q);
            if (prompts[r].Length == 0) throw new ArgumentException($"request {r}: the prompt is empty and no BOS token is added: nothing to condition on");
        }
        var results = new GenerationResult[requests.Count];
        long generated = 0;
        // vLLM ignores a prompt longer than max_model_len: its output is empty, and nothing runs.
        var tooLong = Enumerable.Range(0, requests.Count).Where(r => prompts[r].Length > requests[r].MaxModelLen).ToHashSet();
        foreach (int r in tooLong) results[r] = new GenerationResult("", [], GenerationFinish.Length);
        var order = Enumerable.Range(0, requests.Count).Where(r => !tooLong.Contains(r)).OrderBy(r => prompts[r].Length).ToArray();
        var chunks = Batches(order, MaxBatch, _lanes.Count);
        // Lane l takes the batches l, l + lanes, ...: on its own thread when there are several. A lane
        // that fails stops the others (through stop) instead of letting them finish work that is lost.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        void RunLane(int lane)
        {
            for (int c = lane; c < chunks.Length; c += _lanes.Count)
            {
                stop.Token.ThrowIfCancellationRequested();
                var chunk = chunks[c];
                var outs = GenerateBatch(_lanes[lane], chunk.Select(r => prompts[r]).ToArray(), chunk.Select(r => requests[r]).ToArray(), stop.Token);
                for (int i = 0; i < chunk.Length; i++)
                {
                    results[chunk[i]] = outs[i];
                    Interlocked.Add(ref generated, outs[i].TokenIds.Count);
                }
            }
        }
        int busy = Math.Min(_lanes.Count, chunks.Length);
        if (busy <= 1) RunLane(0);
        else
        {
            // Dedicated threads: a lane decodes for the whole call, and must not wait for a pool thread.
            var failures = new Exception?[busy];
            void Guarded(int lane)
            {
                try { RunLane(lane); }
                catch (Exception e)
                {
                    failures[lane] = e;
                    try { stop.Cancel(); } catch (AggregateException) { }
                }
            }
            var threads = Enumerable.Range(1, busy - 1).Select(l => new Thread(() => Guarded(l)) { IsBackground = true, Name = $"cycleqd-lane-{l}" }).ToList();
            threads.ForEach(t => t.Start());
            Guarded(0);
            threads.ForEach(t => t.Join());
            // A lane's own error comes out as itself; the other lanes' cancellations it caused do not.
            if (failures.FirstOrDefault(e => e is not null and not OperationCanceledException) is { } failure)
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
            cancellationToken.ThrowIfCancellationRequested();
            if (failures.FirstOrDefault(e => e is not null) is { } cancelled)
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(cancelled).Throw();
        }
        LastStats = new GenerationStats(requests.Count, prompts.Sum(p => (long)p.Length), generated, sw.Elapsed.TotalSeconds);
        return results;
    }

    /// <summary>
    /// Cuts <paramref name="order"/> into consecutive batches of at most <paramref name="maxBatch"/>:
    /// as few as that allows, but a multiple of <paramref name="lanes"/> while every batch keeps a
    /// request, and of sizes that differ by at most one (so the lanes finish together).
    /// </summary>
    internal static int[][] Batches(int[] order, int maxBatch, int lanes)
    {
        if (order.Length == 0) return [];
        int count = (order.Length + maxBatch - 1) / maxBatch;
        count = Math.Min(order.Length, (count + lanes - 1) / lanes * lanes);
        var batches = new int[count][];
        for (int b = 0, start = 0; b < count; b++)
        {
            int size = order.Length / count + (b < order.Length % count ? 1 : 0);
            batches[b] = order[start..(start + size)];
            start += size;
        }
        return batches;
    }

    /// <summary>The prompt's ids as <see cref="GenerationRequest.AddBos"/> asks: one BOS prepended, none, or the tokenizer's defaults.</summary>
    public int[] EncodePrompt(GenerationRequest request)
    {
        if (request.AddBos is null) return [.. Tokenizer.EncodeWithDefaults(request.Prompt)];
        var ids = new List<int>();
        if (request.AddBos == true && Tokenizer.BosId is int bos) ids.Add(bos);
        ids.AddRange(Tokenizer.Encode(request.Prompt));
        return [.. ids];
    }

    private GenerationResult[] GenerateBatch(ILlamaSession session, int[][] prompts, GenerationRequest[] requests, CancellationToken ct)
    {
        int batch = prompts.Length, len = prompts.Max(p => p.Length), vocab = session.Config.VocabSize;
        int maxNew = requests.Max(r => r.MaxNewTokens);
        var generated = new List<int>[batch];
        var finish = new GenerationFinish?[batch];
        var texts = new string?[batch];
        var visible = new string[batch];
        var rngs = new Random?[batch];
        for (int b = 0; b < batch; b++)
        {
            generated[b] = [];
            visible[b] = "";
            if (requests[b].MaxNewTokens == 0) finish[b] = GenerationFinish.Length;
            if (requests[b].Temperature > 0) rngs[b] = new Random(unchecked((int)(requests[b].Seed ^ (requests[b].Seed >> 32))));
        }
        var results = new GenerationResult[batch];
        if (maxNew == 0)
        {
            for (int b = 0; b < batch; b++) results[b] = new GenerationResult("", [], GenerationFinish.Length);
            return results;
        }

        // Capacity: the longest prompt plus the most tokens any row may add (max_model_len caps a
        // row at max_model_len − prompt + 1 tokens; rows are left-padded to the longest prompt).
        int capacity = len + Enumerable.Range(0, batch).Max(b =>
            Math.Min(requests[b].MaxNewTokens, requests[b].MaxModelLen is int m ? m - prompts[b].Length + 1 : int.MaxValue));
        using var decoder = session.StartBatch(_weights, batch, capacity);
        // Greedy batches on a decoder that picks the tokens where the logits are computed fetch one id
        // per row and step instead of the [rows, vocab] logits (33 MB per step at batch 64 for Llama-3).
        bool pick = PickOnDevice && decoder.PicksGreedyTokens && requests.All(r => r.Temperature <= 0);
        float[] logitsAll = pick ? [] : decoder.Prefill(prompts);
        int[] picked = pick ? decoder.PrefillGreedy(prompts) : [];
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
                    int token = pick ? picked[r]
                        : requests[b].Temperature > 0 ? Sample(logitsAll.AsSpan(r * vocab, vocab), requests[b].Temperature, requests[b].TopP, rngs[b]!)
                        : ArgMax(logitsAll.AsSpan(r * vocab, vocab));
                    generated[b].Add(token);
                    // vLLM 0.3.0's order: stop strings, then max_model_len, max_tokens, and EOS last.
                    if (requests[b].StopStrings is { Count: > 0 } stops && CheckStop(prompts[b], generated[b], stops, requests[b].StopMatch, ref visible[b]) is string cut)
                    {
                        finish[b] = GenerationFinish.Stop;
                        texts[b] = cut;
                    }
                    else if (prompts[b].Length + generated[b].Count > requests[b].MaxModelLen) finish[b] = GenerationFinish.Length;
                    else if (generated[b].Count >= requests[b].MaxNewTokens) finish[b] = GenerationFinish.Length;
                    else if (_eos.Contains(token)) finish[b] = GenerationFinish.Eos;
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
            if (pick) picked = decoder.DecodeGreedy(next);
            else logitsAll = decoder.Decode(next);
        }
        for (int b = 0; b < batch; b++)
        {
            var gen = generated[b];
            string text = texts[b] ?? OutputText(Tokenizer.DecodeContinuation(prompts[b], finish[b] == GenerationFinish.Eos ? gen[..^1] : gen));
            results[b] = new GenerationResult(text, gen, finish[b]!.Value);
        }
        return results;
    }

    /// <summary>
    /// The text returned for a sequence that did not stop on a stop string: the decoded
    /// continuation without a trailing incomplete UTF-8 character (decoded as U+FFFD), which vLLM's
    /// incremental detokenizer holds back and never emits when the sequence ends there.
    /// </summary>
    internal static string OutputText(string decoded) => decoded.TrimEnd('\uFFFD');

    /// <summary>
    /// Checks the continuation for a stop string after one more token; returns the text to keep
    /// when one ends the sequence, else null. <paramref name="visible"/> is the output text as far
    /// as vLLM's incremental detokenizer has emitted it (it does not grow while the text ends in an
    /// incomplete character).
    /// </summary>
    private string? CheckStop(int[] prompt, List<int> generated, IReadOnlyList<string> stops, StopStringMatch match, ref string visible)
    {
        string text = Tokenizer.DecodeContinuation(prompt, generated);
        return FindStop(text, stops, match, ref visible);
    }

    /// <summary>
    /// The stop rule on decoded text: <see cref="StopStringMatch.EndOfOutput"/> as vLLM 0.3.0 (the
    /// emitted output ends with a stop string, tried in list order, which is cut off the end);
    /// <see cref="StopStringMatch.FirstOccurrence"/> cuts at the earliest occurrence of any.
    /// </summary>
    internal static string? FindStop(string decoded, IReadOnlyList<string> stops, StopStringMatch match, ref string visible)
    {
        if (match == StopStringMatch.FirstOccurrence)
        {
            int best = -1;
            foreach (var s in stops)
            {
                if (s.Length == 0) continue;
                int i = decoded.IndexOf(s, StringComparison.Ordinal);
                if (i >= 0 && (best < 0 || i < best)) best = i;
            }
            return best >= 0 ? decoded[..best] : null;
        }
        if (!decoded.EndsWith('\uFFFD')) visible = decoded;
        // An empty stop string is skipped under both rules (Python's endswith("") would end every sequence at once).
        foreach (var s in stops)
            if (s.Length > 0 && visible.EndsWith(s, StringComparison.Ordinal)) return visible[..^s.Length];
        return null;
    }

    /// <summary>Index of the largest logit (the first one on ties).</summary>
    /// <summary>
    /// Whether greedy batches take their tokens from the graph's argmax (<see cref="Graph.LlamaGraphBuilder.NextTokens"/>)
    /// when the decoder offers it (both graphs, with last-position logits), instead of fetching the logits and taking the argmax here; the two
    /// pick the same token (the first index of the largest logit). On by default.
    /// </summary>
    public bool PickOnDevice { get; set; } = true;

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
