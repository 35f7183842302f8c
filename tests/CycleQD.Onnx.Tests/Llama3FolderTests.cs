using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Onnx.Tokenization;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

/// <summary>A Llama-3-shaped folder (tokenizer.json, chat template, llama3 rope scaling, untied head) with tiny random weights.</summary>
public sealed class Llama3FolderTests
{
    private static TempDir WriteFolder(Action<TempDir>? adjustTokenizer = null)
    {
        string tokDir = TestPaths.RequireSharedData("tokenizers", "llama3");
        var dir = new TempDir();
        foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json", "chat_template.jinja" })
            File.Copy(Path.Combine(tokDir, f), dir.File(f));
        adjustTokenizer?.Invoke(dir);
        File.WriteAllText(dir.File("config.json"), """
            {"model_type": "llama", "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128256, "max_position_embeddings": 256,
             "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": false, "hidden_act": "silu",
             "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
             "bos_token_id": 128000, "eos_token_id": 128001, "torch_dtype": "bfloat16"}
            """);
        File.WriteAllText(dir.File("generation_config.json"), """{"bos_token_id": 128000, "eos_token_id": [128001, 128009]}""");
        var config = HfModelFolder.Open(dir.Path).Config;
        var w = TinyLlama.Weights(config, seed: 99);
        // Stored as BF16, as Llama-3 checkpoints are: bound after conversion to float32.
        SafetensorsWriter.WriteFile(dir.File("model.safetensors"),
            LlamaWeightLayout.For(config).Select(s => TensorData.FromSingle(s.Name, DType.BF16, s.Shape, w[s.Name])).ToList());
        return dir;
    }

    [Fact]
    public void Llama3Folder_ChatPromptGeneratesWithBosOnceAndTheTokenizersEos()
    {
        using var dir = WriteFolder();
        using var model = LlamaModel.Open(dir.Path, maxBatch: 4);
        Assert.Equal(ChatFormat.Llama3, model.ChatFormat);
        // The reference's vLLM stops on the tokenizer's eos_token (<|end_of_text|>) only.
        Assert.Equal([128001], model.Generator.EosIds.Order().ToArray());
        string prompt = ChatTemplate.Render(ChatFormat.Llama3, [new("user", "Hi")], bosToken: model.Tokenizer.BosToken);
        var ids = model.Tokenizer.Encode(prompt);
        Assert.Equal([128000, 128006, 882, 128007, 271, 13347, 128009, 128006, 78191, 128007, 271], ids.ToArray());

        var results = model.Generator.Generate([new GenerationRequest(prompt, MaxNewTokens: 6, AddBos: false), new GenerationRequest("Hello", MaxNewTokens: 3)],
            TestContext.Current.CancellationToken);
        Assert.Equal(11 + 2, model.Generator.LastStats!.PromptTokens); // "Hello" is one token after the added BOS
        Assert.All(results, r => Assert.All(r.TokenIds, id => Assert.InRange(id, 0, 128255)));
        Assert.True(results[0].TokenIds.Count == 6 || results[0].Finish == GenerationFinish.Eos);
    }

    [Fact]
    public void EosChoice_ModelConfig_IsConfigAndGenerationConfigTogether()
    {
        using var dir = WriteFolder();
        using var model = LlamaModel.Open(dir.Path, maxBatch: 1, eos: EosChoice.ModelConfig);
        Assert.Equal([128001, 128009], model.Generator.EosIds.Order().ToArray());
        Assert.Equal(128001, model.Tokenizer.EosId);
        Assert.Equal([128001], LlamaModel.EosIds(model.Folder, model.Tokenizer, EosChoice.Tokenizer).ToArray());
    }

    [Fact]
    public void ByteLevelPostProcessor_AddsNoBos_SoTheReferenceEncodingHasOnlyTheTemplatesBos()
    {
        using var dir = WriteFolder();
        using var model = LlamaModel.Open(dir.Path, maxBatch: 1);
        Assert.Empty(model.Tokenizer.DefaultPrefixIds);
        Assert.Contains("ByteLevel", model.Tokenizer.DefaultsSource);
        Assert.Equal([9906], model.Generator.EncodePrompt(new GenerationRequest("Hello", AddBos: null)));
        Assert.Equal([128000, 9906], model.Generator.EncodePrompt(new GenerationRequest("<|begin_of_text|>Hello", AddBos: null)));
        Assert.Equal([128000, 9906], model.Generator.EncodePrompt(new GenerationRequest("Hello", AddBos: true)));
    }

    [Fact]
    public void TemplateProcessingPostProcessor_AddsBos_EvenBeforeATemplatesOwnBos()
    {
        // Meta's later Llama-3 tokenizer.json: TemplateProcessing puts <|begin_of_text|> before every sequence.
        using var dir = WriteFolder(d =>
        {
            var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(d.File("tokenizer.json")))!;
            root["post_processor"] = System.Text.Json.Nodes.JsonNode.Parse("""
                {"type": "Sequence", "processors": [
                  {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
                  {"type": "TemplateProcessing",
                   "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                   "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                            {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                   "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000], "tokens": ["<|begin_of_text|>"]}}}]}
                """);
            File.WriteAllText(d.File("tokenizer.json"), root.ToJsonString());
        });
        using var model = LlamaModel.Open(dir.Path, maxBatch: 1);
        Assert.Equal([128000], model.Tokenizer.DefaultPrefixIds.ToArray());
        Assert.Empty(model.Tokenizer.DefaultSuffixIds);
        Assert.Equal([128000, 9906], model.Generator.EncodePrompt(new GenerationRequest("Hello", AddBos: null)));
        Assert.Equal([128000, 128000, 9906], model.Generator.EncodePrompt(new GenerationRequest("<|begin_of_text|>Hello", AddBos: null)));
    }

    [Fact]
    public void LlamaTokenizerFastClass_FollowsAddBosTokenOfTokenizerConfig()
    {
        using var dir = WriteFolder(d =>
        {
            var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(d.File("tokenizer_config.json")))!;
            config["tokenizer_class"] = "LlamaTokenizerFast";
            config["add_bos_token"] = false;
            config["add_eos_token"] = true;
            File.WriteAllText(d.File("tokenizer_config.json"), config.ToJsonString());
        });
        using var model = LlamaModel.Open(dir.Path, maxBatch: 1);
        Assert.Empty(model.Tokenizer.DefaultPrefixIds);
        Assert.Equal([128001], model.Tokenizer.DefaultSuffixIds.ToArray());
        Assert.Equal([9906, 128001], model.Generator.EncodePrompt(new GenerationRequest("Hello", AddBos: null)));
    }
}
