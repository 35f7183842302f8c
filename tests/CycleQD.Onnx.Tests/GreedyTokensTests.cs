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
    [InlineData("stories260K")]
    [InlineData("tinyskills/expert-code")]
    public void PickedInTheGraph_EqualsPickedFromTheLogits_ForEveryRow(string model)
    {
        string dir = Path.Combine(TestPaths.RepoRoot, "models", model);
        using var llm = LlamaModel.Open(dir, maxBatch: 8, graph: LlamaGraphKind.Plain);
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
}
