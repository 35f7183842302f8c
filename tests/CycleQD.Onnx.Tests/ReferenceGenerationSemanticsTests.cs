using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Generation;
using CycleQD.Onnx.Runtime;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

/// <summary>
/// Stop strings, max_model_len and BOS as the reference's vLLM 0.3.0 applies them, on the shipped
/// stories260K model (greedy fixture) and on the rule functions directly.
/// </summary>
public sealed class ReferenceGenerationSemanticsTests : IClassFixture<GenerationTests.Stories>
{
    private readonly LlamaModel _model;

    public ReferenceGenerationSemanticsTests(GenerationTests.Stories stories) => _model = stories.Model;

    private IReadOnlyList<GenerationResult> Gen(params GenerationRequest[] requests) =>
        _model.Generator.Generate(requests, TestContext.Current.CancellationToken);

    private static string? Stop(string decoded, string[] stops, StopStringMatch match, ref string visible) =>
        LlamaGenerator.FindStop(decoded, stops, match, ref visible);

    [Fact]
    public void EndOfOutput_StopsOnlyWhenTheOutputEndsWithTheStopString_AndCutsItOff()
    {
        string visible = "";
        // "Response:" arrived with more text in the same token: vLLM 0.3.0 does not see it.
        Assert.Null(Stop("def f():\n@@ Response:\n", ["Response:", "Response"], StopStringMatch.EndOfOutput, ref visible));
        Assert.Equal("def f():\n@@ ", Stop("def f():\n@@ Response", ["Response:", "Response"], StopStringMatch.EndOfOutput, ref visible));
    }

    [Fact]
    public void EndOfOutput_TriesStopStringsInListOrder()
    {
        string visible = "";
        // Both "Instruction:" and ":" end the text; the first listed wins and only it is cut.
        Assert.Equal("x @@ ", Stop("x @@ Instruction:", ["Instruction:", ":"], StopStringMatch.EndOfOutput, ref visible));
        Assert.Equal("x @@ Instruction", Stop("x @@ Instruction:", [":", "Instruction:"], StopStringMatch.EndOfOutput, ref visible));
        Assert.Null(Stop("x @@", [""], StopStringMatch.EndOfOutput, ref visible));
    }

    [Fact]
    public void EndOfOutput_HoldsBackAnIncompleteCharacter_AsTheIncrementalDetokenizer()
    {
        string visible = "";
        Assert.Null(Stop("ab", ["z"], StopStringMatch.EndOfOutput, ref visible));
        Assert.Equal("ab", visible);
        // A trailing U+FFFD is a character still missing bytes: the emitted text stays "ab", which ends with "b".
        Assert.Equal("a", Stop("abc\uFFFD", ["b"], StopStringMatch.EndOfOutput, ref visible));
        Assert.Equal("ab", visible);
    }

    [Fact]
    public void FirstOccurrence_CutsAtTheEarliestStopStringAnywhere()
    {
        string visible = "";
        Assert.Equal("def f():\n@@ ", Stop("def f():\n@@ Response:\n", ["Response:", "Response"], StopStringMatch.FirstOccurrence, ref visible));
        Assert.Equal("a", Stop("a:b Instruction", ["Instruction", ":"], StopStringMatch.FirstOccurrence, ref visible));
    }

    [Fact]
    public void OutputText_DropsATrailingIncompleteCharacterOnly()
    {
        Assert.Equal("abc", LlamaGenerator.OutputText("abc\uFFFD"));
        Assert.Equal("a\uFFFDb", LlamaGenerator.OutputText("a\uFFFDb"));
    }

    [Fact]
    public void StopStringInsideAToken_IsNotSeenAtTheEnd_ButIsFoundAnywhere()
    {
        // Greedy from "Once upon a time" gives ", there was a little girl named Lily." ("girl nam" ends inside " named").
        var plain = Gen(new GenerationRequest("Once upon a time", MaxNewTokens: 12)).Single();
        Assert.StartsWith(", there was a little girl named", plain.Text);
        var end = Gen(new GenerationRequest("Once upon a time", MaxNewTokens: 12, StopStrings: ["girl nam"])).Single();
        var anywhere = Gen(new GenerationRequest("Once upon a time", MaxNewTokens: 12, StopStrings: ["girl nam"], StopMatch: StopStringMatch.FirstOccurrence)).Single();
        Assert.Equal(GenerationFinish.Length, end.Finish);
        Assert.Equal(plain.Text, end.Text);
        Assert.Equal(GenerationFinish.Stop, anywhere.Finish);
        Assert.Equal(", there was a little ", anywhere.Text);
    }

    [Fact]
    public void MaxModelLen_PromptLongerThanTheLimit_GivesAnEmptyOutput()
    {
        // BOS + "Once upon a time" is 5 tokens.
        Assert.Equal(5, _model.Generator.EncodePrompt(new GenerationRequest("Once upon a time")).Length);
        var r = Gen(new GenerationRequest("Once upon a time", MaxNewTokens: 10, MaxModelLen: 4)).Single();
        Assert.Equal("", r.Text);
        Assert.Empty(r.TokenIds);
        Assert.Equal(GenerationFinish.Length, r.Finish);
    }

    [Fact]
    public void MaxModelLen_EndsGenerationOncePromptPlusOutputExceedsIt()
    {
        var (ids, _) = GenerationTests.Fixture();
        // vLLM stops when prompt + output > max_model_len: the model reads positions 0 … limit − 1.
        var atLimit = Gen(new GenerationRequest("Once upon a time", MaxNewTokens: 10, MaxModelLen: 5)).Single();
        Assert.Equal(ids[4..5], atLimit.TokenIds.ToArray());
        var capped = Gen(new GenerationRequest("Once upon a time", MaxNewTokens: 100, MaxModelLen: 20)).Single();
        Assert.Equal(ids[4..20], capped.TokenIds.ToArray());
        Assert.Equal(GenerationFinish.Length, capped.Finish);
        var byTokens = Gen(new GenerationRequest("Once upon a time", MaxNewTokens: 7, MaxModelLen: 4096)).Single();
        Assert.Equal(ids[4..11], byTokens.TokenIds.ToArray());
    }

    [Fact]
    public void MaxModelLen_MixedInOneBatch_EqualsOneByOne()
    {
        GenerationRequest[] requests = [new("Once upon a time", 30, MaxModelLen: 12), new("", 30), new("The cat sat on the mat.", 30, MaxModelLen: 3),
            new("Lily and Tim went to the park. They", 30, MaxModelLen: 25), new("Tom had a red car.", 5, MaxModelLen: 4096)];
        var batched = Gen(requests);
        for (int i = 0; i < requests.Length; i++)
        {
            var single = Gen(requests[i]).Single();
            Assert.Equal(single.TokenIds, batched[i].TokenIds);
            Assert.Equal(single.Finish, batched[i].Finish);
        }
        Assert.Equal(12 - 5 + 1, batched[0].TokenIds.Count);
        Assert.Empty(batched[2].TokenIds);
    }

    [Fact]
    public void TokenizerModel_DefaultsToOneBos_AsHuggingFacesLlamaTokenizer()
    {
        var tok = _model.Tokenizer;
        Assert.Equal([1], tok.DefaultPrefixIds.ToArray());
        Assert.Empty(tok.DefaultSuffixIds);
        Assert.Equal(2, tok.EosId);
        var withDefaults = _model.Generator.EncodePrompt(new GenerationRequest("Once upon a time", AddBos: null));
        Assert.Equal(_model.Generator.EncodePrompt(new GenerationRequest("Once upon a time", AddBos: true)), withDefaults);
        Assert.Equal(tok.Encode("Once upon a time").ToArray(), _model.Generator.EncodePrompt(new GenerationRequest("Once upon a time", AddBos: false)));
    }

    [Fact]
    public void MaxModelLen_BelowOne_IsRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => Gen(new GenerationRequest("x", MaxModelLen: 0)));
        Assert.Contains("MaxModelLen", e.Message);
    }
}
