using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Runtime;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

/// <summary>
/// <see cref="LlamaSequenceScorer"/> on the shipped TinySkills instruct base (a real stories260K-architecture
/// Llama), checked against the generation path: the decoder's prefill of each prefix gives the
/// logits of one position, which must equal the scorer's row for that position.
/// </summary>
public sealed class SequenceScorerTests : IClassFixture<SequenceScorerTests.InstructBase>
{
    public sealed class InstructBase : IDisposable
    {
        public LlamaModel Model { get; } = LlamaModel.Open(Path.Combine(TestPaths.RepoRoot, "models", "tinyskills", "base"), maxBatch: 8);
        public void Dispose() => Model.Dispose();
    }

    private readonly LlamaModel _model;

    public SequenceScorerTests(InstructBase fixture) => _model = fixture.Model;

    private int[] Tokens(string text) => [_model.Tokenizer.BosId!.Value, .. _model.Tokenizer.Encode(text)];

    /// <summary>The last position's logits of <paramref name="prefix"/> from the generation session (one prefill of one row).</summary>
    private float[] SingleStepLogits(ReadOnlySpan<int> prefix)
    {
        using var decoder = _model.Session.StartBatch(_model.Weights, 1, prefix.Length + 1);
        return decoder.Prefill([prefix.ToArray()]);
    }

    /// <summary>log softmax(logits)[index], float64, written out here apart from the scorer's own.</summary>
    private static double LogProbability(float[] logits, int index)
    {
        double max = logits.Max();
        double z = logits.Sum(x => Math.Exp(x - max));
        return logits[index] - max - Math.Log(z);
    }

    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }

    [Fact]
    public void WindowLogits_EveryRow_MatchesThePrefillOfItsPrefix()
    {
        using var scorer = _model.CreateScorer();
        var tokens = Tokens("first g hen .");
        var logits = scorer.WindowLogits(tokens);
        int vocab = _model.Folder.Config.VocabSize;
        Assert.Equal(tokens.Length * vocab, logits.Length);
        for (int i = 0; i < tokens.Length; i++)
        {
            var expected = SingleStepLogits(tokens.AsSpan(0, i + 1));
            var row = logits.AsSpan(i * vocab, vocab);
            Assert.Equal(ArgMax(expected), ArgMax(row));
            for (int v = 0; v < vocab; v++) Assert.True(Math.Abs(expected[v] - row[v]) < 1e-3, $"position {i} token {v}: {row[v]} vs prefill {expected[v]}");
        }
    }

    [Fact]
    public void WindowLogits_LastRowArgMax_IsGreedyGenerationsFirstToken()
    {
        using var scorer = _model.CreateScorer();
        string prompt = "echo 2 fox .";
        var greedy = _model.Generator.Generate([new GenerationRequest(prompt, MaxNewTokens: 1, AddBos: true)], TestContext.Current.CancellationToken).Single();
        var tokens = Tokens(prompt);
        var logits = scorer.WindowLogits(tokens);
        int vocab = _model.Folder.Config.VocabSize;
        Assert.Equal(greedy.TokenIds[0], ArgMax(logits.AsSpan((tokens.Length - 1) * vocab, vocab)));
    }

    [Fact]
    public void Score_OneWindow_EqualsTheSumOfSingleStepLogProbabilities()
    {
        using var scorer = _model.CreateScorer();
        var tokens = Tokens("last a cow e . len 3 4 5 .");
        double expected = 0;
        for (int t = 1; t < tokens.Length; t++) expected -= LogProbability(SingleStepLogits(tokens.AsSpan(0, t)), tokens[t]);

        var r = scorer.Score(tokens, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(tokens.Length - 1, r.Tokens);
        Assert.Equal(1, r.Windows);
        Assert.Equal(512, r.Window);
        Assert.Equal(expected, r.NegativeLogLikelihood, 1e-3);
        Assert.Equal(expected / (tokens.Length - 1), r.NatsPerToken, 1e-4);
        Assert.Equal(Math.Exp(r.NatsPerToken), r.Perplexity, 1e-9);
        Assert.True(r.NatsPerToken > 0);
    }

    [Fact]
    public void Score_SmallWindow_PredictsEachTokenFromItsWindowOnly()
    {
        using var scorer = _model.CreateScorer();
        var tokens = Tokens("echo 2 fox . first g hen .");
        Assert.True(tokens.Length >= 9, $"{tokens.Length} tokens");
        const int window = 4; // stride 2: windows [0,4) [2,6) [4,8) …; a token's context starts at its window's start
        double expected = 0;
        for (int t = 1; t < tokens.Length; t++)
        {
            int start = t < window ? 0 : (t - window) / 2 * 2 + 2;
            expected -= LogProbability(SingleStepLogits(tokens.AsSpan(start, t - start)), tokens[t]);
        }
        var r = scorer.Score(tokens, window, TestContext.Current.CancellationToken);
        Assert.Equal(tokens.Length - 1, r.Tokens);
        Assert.Equal(2, r.Stride);
        Assert.Equal(expected, r.NegativeLogLikelihood, 1e-3);
        Assert.NotEqual(scorer.Score(tokens, cancellationToken: TestContext.Current.CancellationToken).NegativeLogLikelihood, r.NegativeLogLikelihood, 1e-3);
    }

    [Theory]
    [InlineData(2, 2)]
    [InlineData(7, 4)]
    [InlineData(8, 4)]
    [InlineData(100, 7)]
    [InlineData(512, 512)]
    [InlineData(1300, 512)]
    public void Windows_ScoreEveryTokenButTheFirstOnce_WithHalfAWindowOfContext(int length, int window)
    {
        var windows = LlamaSequenceScorer.Windows(length, window);
        var scored = new int[length];
        int stride = (window + 1) / 2;
        for (int k = 0; k < windows.Count; k++)
        {
            var (start, end, first) = windows[k];
            Assert.Equal(k * stride, start);
            Assert.True(end - start <= window);
            Assert.True(first >= start + 1);
            if (k > 0) Assert.True(first - start >= window - stride, $"window {k}: {first - start} tokens of context");
            for (int t = first; t < end; t++) scored[t]++;
        }
        Assert.Equal(length, windows[^1].End);
        Assert.Equal(0, scored[0]);
        Assert.All(scored.Skip(1), c => Assert.Equal(1, c));
    }

    [Fact]
    public void Windows_OfSevenTokensAndWindowFour_AreTheDocumentedOnes()
    {
        Assert.Equal([(0, 4, 1), (2, 6, 4), (4, 7, 6)], LlamaSequenceScorer.Windows(7, 4));
    }

    [Fact]
    public void Score_BadInput_IsRefusedWithTheReason()
    {
        using var scorer = _model.CreateScorer();
        Assert.Contains("at least two", Assert.Throws<ArgumentException>(() => scorer.Score([1], cancellationToken: TestContext.Current.CancellationToken)).Message);
        Assert.Contains("max_position_embeddings (512)", Assert.Throws<ArgumentException>(() => scorer.Score([1, 2, 3], 513, TestContext.Current.CancellationToken)).Message);
        Assert.Contains("max_position_embeddings (512)", Assert.Throws<ArgumentException>(() => scorer.WindowLogits(new int[513])).Message);
    }
}
