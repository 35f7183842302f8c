using System.Text.Json;
using CycleQD.Onnx.Tokenization;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

public sealed class TokenizerTests
{
    private static readonly Lazy<TextTokenizer> Llama3 = new(() =>
        TextTokenizer.LoadHuggingFaceJson(TestPaths.RequireSharedData("tokenizers", "llama3", "tokenizer.json")));

    [Fact]
    public void Llama3Bpe_ReproducesEncodeFixtures()
    {
        string fixtures = TestPaths.RequireSharedData("tokenizers", "llama3", "encode_fixtures.json");
        var tok = Llama3.Value;
        using var doc = JsonDocument.Parse(File.ReadAllBytes(fixtures));
        int cases = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            var expected = c.GetProperty("ids_add_special_false").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal(expected, tok.Encode(text).ToArray());
            Assert.Equal(c.GetProperty("decoded").GetString(), tok.Decode(expected));
            cases++;
        }
        Assert.True(cases >= 10);
    }

    [Fact]
    public void Llama3ChatTemplate_MatchesFixtureRendering()
    {
        string fixtures = TestPaths.RequireSharedData("tokenizers", "llama3", "encode_fixtures.json");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(fixtures));
        var r = doc.RootElement.GetProperty("chat_template_rendering");
        var messages = r.GetProperty("messages").EnumerateArray()
            .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList();
        Assert.Equal(r.GetProperty("rendered").GetString(), ChatTemplate.Render(ChatFormat.Llama3, messages));
        string template = File.ReadAllText(TestPaths.RequireSharedData("tokenizers", "llama3", "chat_template.jinja"));
        Assert.Equal(ChatFormat.Llama3, ChatTemplate.Detect(template));
    }

    [Fact]
    public void CodeInstructionTemplate_RendersSystemInstructionAndResponsePrompt()
    {
        string prompts = TestPaths.RequireSharedData("cycleqd_prompts.json");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(prompts));
        string template = doc.RootElement.GetProperty("items").GetProperty("mbpp.chat_template").GetProperty("text").GetString()!;
        Assert.Equal(ChatFormat.CodeInstruction, ChatTemplate.Detect(template));
        var text = ChatTemplate.Render(ChatFormat.CodeInstruction, [new("system", " Be exact. "), new("user", "Write f.\n"), new("assistant", " def f(): pass "), new("user", "Again")]);
        Assert.Equal("Be exact.\n\n@@ Instruction:\nWrite f.\n\n@@ Response:\ndef f(): pass@@ Instruction:\nAgain\n\n@@ Response:", text);
        Assert.Throws<ArgumentException>(() => ChatTemplate.Render(ChatFormat.CodeInstruction, [new("assistant", "x")]));
    }

    [Fact]
    public void SentencePiece_EncodesWithDummyPrefixAndByteFallback()
    {
        var tok = TextTokenizer.Load(HfModelFolder.Open(TestPaths.Stories260K));
        Assert.Equal(1, tok.BosId);
        Assert.Equal([403, 407, 261, 378], tok.Encode("Once upon a time").ToArray());
        var ids = tok.Encode("日本");
        Assert.Equal(7, ids.Count); // the dummy-prefix piece, then six UTF-8 bytes as byte pieces <0x..>
        Assert.All(ids.Skip(1), id => Assert.InRange(id, 3, 258));
        Assert.Equal("日本", tok.Decode(ids));
        Assert.Equal(", there", tok.DecodeContinuation(tok.Encode("Once upon a time"), tok.Encode("Once upon a time, there").Skip(4).ToList()));
    }

    [Fact]
    public void FolderWithoutTokenizer_ErrorNamesFolder()
    {
        using var dir = new TempDir();
        File.Copy(Path.Combine(TestPaths.Stories260K, "config.json"), dir.File("config.json"));
        var e = Assert.Throws<TensorFormatException>(() => TextTokenizer.Load(HfModelFolder.Open(dir.Path)));
        Assert.Contains(dir.Path, e.Message);
        Assert.Contains("tokenizer.json", e.Message);
    }
}
