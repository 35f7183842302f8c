using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Generation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

/// <summary>
/// Greedy decoding with the token picked in the graph (the plain graph's next_tokens output, so the
/// logits can stay on the GPU) equals picking it from the fetched logits.
/// </summary>
public sealed class GreedyTokensTests
{
    private static readonly string[] Prompts =
    [
        "Once upon a time", "Lily and Tim went to the park. They", "The cat sat on the mat.", "Tom had a red car.", "The sun was hot.",
    ];

    [Theory]
    [InlineData("stories260K", LlamaGraphKind.Plain)]
    [InlineData("tinyskills/expert-code", LlamaGraphKind.Plain)]
    [InlineData("tinyskills/expert-code", LlamaGraphKind.Fused)]
    public void PickedInTheGraph_EqualsPickedFromTheLogits_ForEveryRow(string model, LlamaGraphKind graph)
    {
        string dir = Path.Combine(TestPaths.RepoRoot, "models", model);
        using var llm = LlamaModel.Open(dir, maxBatch: 8, graph: graph);
        var requests = Prompts.Select((p, i) => new GenerationRequest(p, MaxNewTokens: 6 + 3 * i)).ToList();
        var ct = TestContext.Current.CancellationToken;
        llm.Generator.PickOnDevice = false;
        var fromLogits = llm.Generator.Generate(requests, ct);
        llm.Generator.PickOnDevice = true;
        var inGraph = llm.Generator.Generate(requests, ct);
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(fromLogits[i].TokenIds, inGraph[i].TokenIds);
            Assert.Equal(fromLogits[i].Text, inGraph[i].Text);
            Assert.Equal(fromLogits[i].Finish, inGraph[i].Finish);
        }
        Assert.Contains(inGraph, r => r.TokenIds.Count > 1);
        Assert.Equal(graph, llm.Session.Graph);
    }

    [Fact]
    public void NextTokensOutput_IsTheArgmaxOfTheLogits_OnRandomWeights()
    {
        var config = TinyLlama.Config(tied: false);
        var weights = TinyLlama.Weights(config, seed: 7);
        using var session = new LlamaSession(config, new LlamaGraphOptions(LastPositionLogitsOnly: true));
        using var bound = LlamaWeights.FromArrays(config, weights, "random");
        long[] ids = [3, 17, 42, 5, 9, 11, 2, 60];
        long[] pos = [0, 1, 2, 3, 0, 1, 2, 3];
        byte[] mask = [1, 1, 1, 1, 1, 1, 1, 1];
        using var empty1 = session.EmptyCache(2);
        var logits = session.Run(bound, ids, pos, mask, 2, empty1);
        logits.Cache.Dispose();
        using var empty2 = session.EmptyCache(2);
        var tokens = session.Run(bound, ids, pos, mask, 2, empty2, greedyTokensOnly: true);
        tokens.Cache.Dispose();
        Assert.Empty(tokens.Logits);
        int v = config.VocabSize;
        for (int b = 0; b < 2; b++)
            Assert.Equal(LlamaGenerator.ArgMax(logits.Logits.AsSpan(b * v, v)), tokens.NextTokens![b]);
    }

    [Theory]
    [InlineData(8)]
    [InlineData(16)]
    public void FusedDecoder_GreedyAndLogitStepsMixed_AgreeWithTheFloat64Reference(int headDim)
    {
        var config = TinyLlama.Config(tied: false, TinyLlama.Llama3Scaling, headDim);
        var w = TinyLlama.Weights(config, seed: 41);
        int[][] prompts = [[4, 8, 15, 16], [7, 7], [59, 1, 2]];
        using var session = ILlamaSession.Open(LlamaGraphKind.Fused, config, new LlamaGraphOptions(LastPositionLogitsOnly: true));
        using var weights = LlamaWeights.FromArrays(config, w, "random");
        using var decoder = session.StartBatch(weights, 3, 10);
        Assert.True(decoder.PicksGreedyTokens);
        int v = config.VocabSize;
        var seqs = prompts.Select(p => p.ToList()).ToArray();
        var prefill = decoder.Prefill(prompts);
        var prefillCopy = prefill.ToArray();
        // Greedy, logits, greedy, greedy, logits: each step's result against the reference's argmax or logits.
        int[] next = [.. Enumerable.Range(0, 3).Select(r => LlamaGenerator.ArgMax(prefill.AsSpan(r * v, v)))];
        foreach (bool greedy in new[] { true, false, true, true, false })
        {
            for (int r = 0; r < 3; r++) seqs[r].Add(next[r]);
            var expected = seqs.Select(q => ReferenceLlama.Forward(config, w, [.. q])).ToArray();
            if (greedy)
            {
                next = decoder.DecodeGreedy(next);
                for (int r = 0; r < 3; r++)
                    Assert.Equal(ArgMax(TinyLlama.Rows(expected[r], seqs[r].Count - 1, 1).ToArray()), next[r]);
            }
            else
            {
                var logits = decoder.Decode(next);
                for (int r = 0; r < 3; r++)
                {
                    double err = TinyLlama.RelativeError(logits.AsSpan(r * v, v), TinyLlama.Rows(expected[r], seqs[r].Count - 1, 1));
                    Assert.True(err < 1e-5, $"row {r} after {seqs[r].Count} tokens: relative error {err:E3}");
                    next[r] = LlamaGenerator.ArgMax(logits.AsSpan(r * v, v));
                }
            }
        }
        // The prefill's array was not reused by the decoding steps.
        Assert.Equal(prefillCopy, prefill);
    }

    private static int ArgMax(double[] row) => LlamaGenerator.ArgMax([.. row.Select(x => (float)x)]);
}
