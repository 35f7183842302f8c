using System.Diagnostics;
using CycleQD.Onnx.Graph;
using CycleQD.Tensors;

namespace CycleQD.Onnx.Runtime;

/// <summary>
/// The log-likelihood a model gives a text: summed over <see cref="Tokens"/> scored tokens, in nats.
/// </summary>
/// <param name="Tokens">Tokens whose probability was scored (every token of the sequence but the first).</param>
/// <param name="NegativeLogLikelihood">−Σ log p(tokenᵢ | the tokens before it in its window), nats.</param>
/// <param name="Windows">Forward passes made.</param>
/// <param name="Window">Most tokens per forward pass.</param>
/// <param name="Stride">Tokens a window starts after the previous one's start.</param>
/// <param name="Seconds">Wall time of the forward passes and the log-softmax.</param>
public sealed record SequenceLikelihood(long Tokens, double NegativeLogLikelihood, int Windows, int Window, int Stride, double Seconds)
{
    /// <summary>Mean negative log-likelihood per scored token, nats (lower is better).</summary>
    public double NatsPerToken => Tokens == 0 ? double.NaN : NegativeLogLikelihood / Tokens;

    /// <summary>exp(<see cref="NatsPerToken"/>).</summary>
    public double Perplexity => Math.Exp(NatsPerToken);

    /// <summary>Scored tokens per second of wall time.</summary>
    public double TokensPerSecond => Seconds > 0 ? Tokens / Seconds : 0;
}

/// <summary>
/// Scores token sequences with a Llama-family model: one forward pass of the plain graph over a whole
/// window returns the logits after every position (the generation sessions keep only the last
/// position's), from which the log-probability of each next token follows by a float64 log-softmax.
/// Owns its session; the weights are borrowed and read at every call, so weights bound from arrays
/// that are overwritten between calls (a run's candidates) are scored as they are at that call.
/// One call at a time.
/// </summary>
public sealed class LlamaSequenceScorer : IDisposable
{
    private readonly LlamaSession _session;
    private LlamaWeights _weights;

    /// <summary>The architecture.</summary>
    public LlamaConfig Config => _session.Config;

    /// <summary>Most tokens in one forward pass: config.json's max_position_embeddings.</summary>
    public int MaxLength => Config.MaxPositionEmbeddings;

    /// <summary>Opens a full-sequence-logits session for <paramref name="config"/> over <paramref name="weights"/> (not owned).</summary>
    /// <param name="config">The architecture.</param>
    /// <param name="weights">The weights to score with, of <paramref name="config"/>.</param>
    /// <param name="device">Execution provider.</param>
    /// <param name="configPath">Names config.json in errors.</param>
    /// <param name="intraOpThreads">CPU threads per operator (0: ONNX Runtime's default).</param>
    /// <param name="cudaDevice">The GPU (CUDA ordinal) of the CUDA provider.</param>
    public LlamaSequenceScorer(LlamaConfig config, LlamaWeights weights, InferenceDevice device = InferenceDevice.Cpu, string configPath = "config.json", int intraOpThreads = 0,
        int cudaDevice = 0)
    {
        _weights = weights;
        _session = new LlamaSession(config, new LlamaGraphOptions(weights.ElementType, LastPositionLogitsOnly: false), device, configPath, intraOpThreads, cudaDevice);
    }

    /// <summary>Scores with <paramref name="weights"/> (not owned; same architecture and element type) from the next call on.</summary>
    /// <exception cref="ArgumentException">the weights' element type is not the session's.</exception>
    public void Rebind(LlamaWeights weights)
    {
        if (weights.ElementType != _weights.ElementType)
            throw new ArgumentException($"weights of {weights.ElementType} for a {_weights.ElementType} session", nameof(weights));
        _weights = weights;
    }

    /// <summary>
    /// The logits after every position of <paramref name="tokens"/> in one forward pass from an empty
    /// cache: [tokens.Length, vocab] row-major, row i predicting token i + 1.
    /// </summary>
    /// <exception cref="ArgumentException">no tokens, or more than <see cref="MaxLength"/>.</exception>
    public float[] WindowLogits(ReadOnlySpan<int> tokens)
    {
        int n = tokens.Length;
        if (n == 0) throw new ArgumentException("no tokens to score");
        if (n > MaxLength) throw new ArgumentException($"{n} tokens exceed the model's max_position_embeddings ({MaxLength})");
        var ids = new long[n];
        var positions = new long[n];
        var mask = new byte[n];
        for (int i = 0; i < n; i++) { ids[i] = tokens[i]; positions[i] = i; mask[i] = 1; }
        using var empty = _session.EmptyCache(1);
        var step = _session.Run(_weights, ids, positions, mask, 1, empty);
        step.Cache.Dispose();
        return step.Logits;
    }

    /// <summary>
    /// log p(tokens[i + 1] | tokens[0..i]) for i = 0 … n − 2 (n − 1 values, nats), from one forward pass;
    /// the log-softmax is computed in float64 from the float32 logits.
    /// </summary>
    public double[] NextTokenLogProbabilities(ReadOnlySpan<int> tokens)
    {
        var logits = WindowLogits(tokens);
        int vocab = Config.VocabSize;
        var result = new double[tokens.Length - 1];
        for (int i = 0; i + 1 < tokens.Length; i++)
            result[i] = LogSoftmaxAt(logits.AsSpan(i * vocab, vocab), tokens[i + 1]);
        return result;
    }

    /// <summary>log softmax(<paramref name="logits"/>)[<paramref name="index"/>] in float64: x − max − log Σ exp(xⱼ − max).</summary>
    internal static double LogSoftmaxAt(ReadOnlySpan<float> logits, int index)
    {
        double max = double.NegativeInfinity;
        foreach (float x in logits) if (x > max) max = x;
        double sum = 0;
        foreach (float x in logits) sum += Math.Exp(x - max);
        return logits[index] - max - Math.Log(sum);
    }

    /// <summary>
    /// The windows a sequence of <paramref name="length"/> tokens is scored in, for windows of at most
    /// <paramref name="window"/> tokens: window k covers [k·s, min(k·s + window, length)) with stride
    /// s = ⌈window / 2⌉ (at least 1), and scores the tokens of it that no earlier window scored (token 0, the
    /// first, is never scored: nothing precedes it). So every other token is scored exactly once, and every token
    /// after the first window is predicted from at least window − s tokens of context. The last window ends at
    /// <paramref name="length"/>.
    /// </summary>
    /// <returns>(Start, End, FirstScored): the window's tokens [Start, End); tokens FirstScored … End − 1 are scored.</returns>
    public static IReadOnlyList<(int Start, int End, int FirstScored)> Windows(int length, int window)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(window, 2);
        int stride = Stride(window);
        var list = new List<(int, int, int)>();
        int scoredUpTo = 1; // token 0 has no prediction
        for (int start = 0; scoredUpTo < length; start += stride)
        {
            int end = Math.Min(start + window, length);
            list.Add((start, end, scoredUpTo));
            scoredUpTo = end;
        }
        return list;
    }

    private static int Stride(int window) => Math.Max(1, (window + 1) / 2);

    /// <summary>
    /// Scores <paramref name="tokens"/> (the first is context only, e.g. BOS) in windows of at most
    /// <paramref name="window"/> tokens (default and upper bound: <see cref="MaxLength"/>) by the rule of
    /// <see cref="Windows"/>.
    /// </summary>
    /// <exception cref="ArgumentException">fewer than two tokens, or a window outside [2, <see cref="MaxLength"/>].</exception>
    public SequenceLikelihood Score(IReadOnlyList<int> tokens, int? window = null, CancellationToken cancellationToken = default)
    {
        if (tokens.Count < 2) throw new ArgumentException($"{tokens.Count} token(s): scoring needs at least two (a context token and one to predict)");
        int w = window ?? MaxLength;
        if (w < 2 || w > MaxLength) throw new ArgumentException($"window {w} must be between 2 and the model's max_position_embeddings ({MaxLength})");
        var all = tokens as int[] ?? tokens.ToArray();
        var clock = Stopwatch.StartNew();
        var windows = Windows(all.Length, w);
        double nll = 0;
        long scored = 0;
        foreach (var (start, end, first) in windows)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var lp = NextTokenLogProbabilities(all.AsSpan(start, end - start));
            // lp[j] predicts token start + j + 1.
            for (int t = first; t < end; t++) { nll -= lp[t - start - 1]; scored++; }
        }
        return new SequenceLikelihood(scored, nll, windows.Count, w, Stride(w), clock.Elapsed.TotalSeconds);
    }

    /// <summary>Releases the session (not the weights).</summary>
    public void Dispose() => _session.Dispose();
}
