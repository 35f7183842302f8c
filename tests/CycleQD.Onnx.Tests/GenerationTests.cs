using System.Text.Json;
using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

/// <summary>Generation on the shipped stories260K model against llama2.c's greedy fixture.</summary>
public sealed class GenerationTests : IClassFixture<GenerationTests.Stories>
{
    public sealed class Stories : IDisposable
    {
        public LlamaModel Model { get; } = LlamaModel.Open(TestPaths.Stories260K, maxBatch: 8);
        public void Dispose() => Model.Dispose();
    }

    private readonly LlamaModel _model;

    public GenerationTests(Stories stories) => _model = stories.Model;

    private IReadOnlyList<GenerationResult> Gen(IReadOnlyList<GenerationRequest> requests) =>
        _model.Generator.Generate(requests, TestContext.Current.CancellationToken);

    internal static (int[] Ids, string Text) Fixture()
    {
        string path = TestPaths.RequireSharedData("models", "stories260K", "greedy_fixture.json");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return (doc.RootElement.GetProperty("greedy_token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                doc.RootElement.GetProperty("greedy_text").GetString()!);
    }

    [Fact]
    public void GreedyFromBos_Reproduces200FixtureTokens()
    {
        var (ids, text) = Fixture();
        var r = Gen([new GenerationRequest("", MaxNewTokens: 200)]).Single();
        Assert.Equal(ids, r.TokenIds.ToArray());
        Assert.Equal(text, r.Text);
        Assert.Equal(GenerationFinish.Length, r.Finish);
    }

    [Fact]
    public void GreedyFromOnceUponATime_ContinuesAsFixture()
    {
        var (ids, text) = Fixture();
        Assert.Equal(ids[..4], _model.Tokenizer.Encode("Once upon a time").ToArray());
        var r = Gen([new GenerationRequest("Once upon a time", MaxNewTokens: 50)]).Single();
        Assert.Equal(ids[4..54], r.TokenIds.ToArray());
        Assert.StartsWith("Once upon a time" + r.Text, text);
    }

    [Fact]
    public void BatchedLeftPaddedGreedy_EqualsOneByOne()
    {
        string[] prompts = ["", "Once upon a time", "Lily and Tim went to the park. They", "The cat sat on the mat.",
            "One day, a little dog named Max found a big red ball!", "calc 3+4 = 7", "  two  spaces\tand a tab\nnew line 12345", "Café naïve “quotes” — 日本"];
        var requests = prompts.Select(p => new GenerationRequest(p, MaxNewTokens: 40)).ToList();
        var batched = Gen(requests);
        Assert.Equal(prompts.Length, _model.Generator.LastStats!.Sequences);
        for (int i = 0; i < prompts.Length; i++)
        {
            var single = Gen([requests[i]]).Single();
            Assert.Equal(single.TokenIds, batched[i].TokenIds);
            Assert.Equal(single.Text, batched[i].Text);
        }
    }

    [Fact]
    public void SequencesFinishingEarly_LeaveTheRestUnchanged()
    {
        // Finished sequences are dropped from the batch's cache; the others must not notice.
        GenerationRequest[] requests = [new("Once upon a time", 3), new("The cat sat on the mat.", 40), new("Tom had a red car.", 0),
            new("Lily and Tim went to the park. They", 12, StopStrings: ["."]), new("The sun was hot.", 25)];
        var batched = Gen(requests);
        for (int i = 0; i < requests.Length; i++)
        {
            var single = Gen([requests[i]]).Single();
            Assert.Equal(single.TokenIds, batched[i].TokenIds);
            Assert.Equal(single.Finish, batched[i].Finish);
        }
        Assert.Equal(3, batched[0].TokenIds.Count);
        Assert.Empty(batched[2].TokenIds);
        Assert.Equal(40, batched[1].TokenIds.Count);
    }

    [Fact]
    public void StopString_CutsTextBeforeIt()
    {
        var r = Gen([new GenerationRequest("Once upon a time", MaxNewTokens: 60, StopStrings: ["Lily"])]).Single();
        Assert.Equal(GenerationFinish.Stop, r.Finish);
        Assert.Equal(", there was a little girl named ", r.Text);
        Assert.DoesNotContain("Lily", r.Text);
    }

    [Fact]
    public void Sampling_IsSeededAndTinyTopPIsGreedy()
    {
        GenerationRequest Req(ulong seed, double topP = 0.95) => new("Once upon a time", MaxNewTokens: 30, Temperature: 1.0, TopP: topP, Seed: seed);
        var results = Gen([Req(7), Req(7), Req(8), Req(9), Req(7, topP: 1e-6)]);
        Assert.Equal(results[0].TokenIds, results[1].TokenIds);
        Assert.False(results[0].TokenIds.SequenceEqual(results[2].TokenIds) && results[0].TokenIds.SequenceEqual(results[3].TokenIds),
            "three seeds gave the same 30 sampled tokens");
        var greedy = Gen([new GenerationRequest("Once upon a time", MaxNewTokens: 30)]).Single();
        Assert.Equal(greedy.TokenIds, results[4].TokenIds);
    }

    [Fact]
    public async Task AsTextGenerator_ReturnsResultsInRequestOrder()
    {
        ITextGenerator g = _model.Generator;
        var rs = await g.GenerateAsync([new("The cat sat on the mat.", 5), new("", 0), new("Once upon a time", 3)], TestContext.Current.CancellationToken);
        Assert.Equal(5, rs[0].TokenIds.Count);
        Assert.Empty(rs[1].TokenIds);
        Assert.Equal(3, rs[2].TokenIds.Count);
        Assert.Equal(Fixture().Ids[4..7], rs[2].TokenIds.ToArray());
    }

    [Fact]
    public void EmptyPromptWithoutBos_IsRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => Gen([new GenerationRequest("", AddBos: false)]));
        Assert.Contains("request 0", e.Message);
    }
    [Fact]
    public void DefaultGraphOnCpu_IsFused()
    {
        Assert.Equal(LlamaGraphKind.Fused, _model.Session.Graph);
    }

    [Fact]
    public void PlainGraph_GreedyFromBos_Reproduces200FixtureTokens_AndAgreesWithFusedOnABatch()
    {
        var (ids, _) = Fixture();
        using var plain = LlamaModel.Open(TestPaths.Stories260K, maxBatch: 8, graph: LlamaGraphKind.Plain);
        Assert.Equal(LlamaGraphKind.Plain, plain.Session.Graph);
        var r = plain.Generator.Generate([new GenerationRequest("", MaxNewTokens: 200)], TestContext.Current.CancellationToken).Single();
        Assert.Equal(ids, r.TokenIds.ToArray());
        GenerationRequest[] requests = [new("Once upon a time", 30), new("The cat sat on the mat.", 25), new("Tom had a red car.", 7), new("", 40)];
        var fromPlain = plain.Generator.Generate(requests, TestContext.Current.CancellationToken);
        var fromFused = Gen(requests);
        for (int i = 0; i < requests.Length; i++) Assert.Equal(fromPlain[i].TokenIds, fromFused[i].TokenIds);
    }

    [Fact]
    public void FusedFloat16_GreedyFromBos_Reproduces200FixtureTokens()
    {
        var (ids, _) = Fixture();
        using var half = LlamaModel.Open(TestPaths.Stories260K, maxBatch: 1, elementType: OnnxElementType.Float16, graph: LlamaGraphKind.Fused);
        var r = half.Generator.Generate([new GenerationRequest("", MaxNewTokens: 200)], TestContext.Current.CancellationToken).Single();
        Assert.Equal(ids, r.TokenIds.ToArray());
    }
}
