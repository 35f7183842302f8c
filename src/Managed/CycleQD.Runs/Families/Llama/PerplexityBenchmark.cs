using System.Globalization;
using System.Text;
using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Runtime;
using CycleQD.Onnx.Tokenization;

namespace CycleQD.Runs.Families.Llama;

/// <summary>
/// The task "perplexity": how well a model predicts a user's UTF-8 text file, in nats per token
/// (lower is better), and how fast it scores it (tokens per second). The text is tokenised whole with
/// the model's tokenizer after its BOS token and scored in windows of the model's max length
/// (<see cref="LlamaSequenceScorer.Windows"/>: stride half a window, every token but BOS scored once).
/// It reads the model's logits, not generated text, so it runs through
/// <see cref="ScoreAsync"/> with a <see cref="LlamaSequenceScorer"/>; a text generator cannot score it.
/// </summary>
/// <param name="path">The text file (absolute).</param>
/// <param name="window">Most tokens per forward pass (null: the model's max_position_embeddings).</param>
public sealed class PerplexityBenchmark(string path, int? window) : IBenchmark
{
    /// <summary>The task's name.</summary>
    public const string TaskName = "perplexity";

    /// <inheritdoc/>
    public string Name => TaskName;

    /// <summary>The text file.</summary>
    public string Path => path;

    /// <summary>Most tokens per window, or null for the model's max length.</summary>
    public int? Window => window;

    /// <summary>
    /// The file's text, strictly decoded as UTF-8 (a byte-order mark is dropped).
    /// </summary>
    /// <exception cref="FileNotFoundException">the file does not exist (names it).</exception>
    /// <exception cref="InvalidDataException">the file is empty or not UTF-8 (names it and the byte offset).</exception>
    public static string ReadText(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"perplexity text file not found: {path}", path);
        var bytes = File.ReadAllBytes(path);
        int skip = bytes.AsSpan().StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]) ? 3 : 0;
        string text;
        try
        {
            text = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(bytes, skip, bytes.Length - skip);
        }
        catch (DecoderFallbackException e)
        {
            string at = e.Index >= 0 ? $" (invalid byte at offset {(skip + e.Index).ToString(CultureInfo.InvariantCulture)})" : "";
            throw new InvalidDataException($"{path}: the perplexity text file is not UTF-8{at}", e);
        }
        if (string.IsNullOrWhiteSpace(text)) throw new InvalidDataException($"{path}: the perplexity text file is empty (no text to score)");
        return text;
    }

    /// <summary>BOS (when the tokenizer has one) and the whole text's tokens.</summary>
    public static int[] Tokenize(TextTokenizer tokenizer, string text) =>
        tokenizer.BosId is int bos ? [bos, .. tokenizer.Encode(text)] : [.. tokenizer.Encode(text)];

    /// <summary>
    /// Scores the file with <paramref name="scorer"/> (the weights bound to it now) and
    /// <paramref name="tokenizer"/>. Score = nats per token; metrics nats_per_token, perplexity,
    /// tokens, windows, window, stride, tokens_per_second; one sample per window (correct: scored).
    /// </summary>
    public Task<EvaluationReport> ScoreAsync(LlamaSequenceScorer scorer, TextTokenizer tokenizer, CancellationToken cancellationToken) => Task.Run(() =>
    {
        var tokens = Tokenize(tokenizer, ReadText(path));
        if (tokens.Length < 2) throw new InvalidDataException($"{path}: the perplexity text file gives {tokens.Length} token(s); at least one token after BOS is needed");
        int w = window is int given ? Math.Min(given, scorer.MaxLength) : scorer.MaxLength;
        var r = scorer.Score(tokens, w, cancellationToken);
        var windows = LlamaSequenceScorer.Windows(tokens.Length, w);
        var samples = windows.Select((x, k) => new SampleOutcome($"window-{k}", true, $"tokens [{x.Start}, {x.End})",
            [], $"scores tokens {x.FirstScored}..{x.End - 1}")).ToList();
        var metrics = new Dictionary<string, double>
        {
            ["nats_per_token"] = r.NatsPerToken,
            ["perplexity"] = r.Perplexity,
            ["tokens"] = r.Tokens,
            ["windows"] = r.Windows,
            ["window"] = r.Window,
            ["stride"] = r.Stride,
            ["tokens_per_second"] = r.TokensPerSecond,
        };
        return new EvaluationReport(TaskName, r.NatsPerToken, metrics, samples);
    }, cancellationToken);

    /// <summary>Refused: perplexity reads the model's logits, which a text generator does not give.</summary>
    public Task<EvaluationReport> EvaluateAsync(ITextGenerator generator, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Task.FromException<EvaluationReport>(new InvalidOperationException("perplexity scores a model's own probabilities of a text: it needs a Llama-family model's logits, not a text generator or a scripted responder"));
}
