using CycleQD.Testing;
using CycleQD.Tensors;

namespace CycleQD.Tensors.Tests;

public class HfModelFolderTests
{
    [Fact]
    public void Open_Stories260K_ReadsLlamaConfigAndTokenizerFiles()
    {
        var m = HfModelFolder.Open(TestPaths.Stories260K);
        var c = m.Config;
        Assert.Equal("llama", c.ModelType);
        Assert.Equal((64, 172, 5, 8, 4, 512, 8), (c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.VocabSize, c.HeadDim));
        Assert.Equal(1e-5, c.RmsNormEps);
        Assert.Equal(10000.0, c.RopeTheta);
        Assert.Null(c.RopeScaling);
        Assert.True(c.TieWordEmbeddings);
        Assert.Equal([2], c.EosTokenIds);
        Assert.Contains(m.TokenizerFiles, f => f.EndsWith("tokenizer.model"));

        using var w = m.OpenWeights();
        Assert.Equal(47, w.Tensors.Count);
        Assert.Equal(c.ParameterCount, w.Tensors.Sum(t => t.ElementCount));
        Assert.False(w.Contains("lm_head.weight"));
    }

    [Fact]
    public void Parse_Llama3Config_ReadsRopeScalingAndEosList()
    {
        const string json = """
        {"model_type":"llama","hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,
         "num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,"rope_theta":500000.0,
         "rms_norm_eps":1e-05,"tie_word_embeddings":false,"eos_token_id":[128001,128008,128009],
         "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"}}
        """;
        var c = LlamaConfig.Parse(json, "config.json");
        Assert.Equal(128, c.HeadDim);
        Assert.Equal("llama3", c.RopeScaling!.Type);
        Assert.Equal(8.0, c.RopeScaling.Factor);
        Assert.Equal(8192, c.RopeScaling.OriginalMaxPositionEmbeddings);
        Assert.Equal([128001, 128008, 128009], c.EosTokenIds);
        Assert.Equal(8_030_261_248L, c.ParameterCount); // Llama-3-8B
    }

    [Theory]
    [InlineData("{\"model_type\":\"llama\"}", "hidden_size")]
    [InlineData("{\"model_type\":\"llama\",\"hidden_size\":\"big\"}", "hidden_size")]
    [InlineData("{\"hidden_size\":4}", "model_type")]
    [InlineData("{not json", "invalid JSON")]
    public void Parse_BadConfig_NamesFileAndField(string json, string expected)
    {
        var e = Assert.Throws<TensorFormatException>(() => LlamaConfig.Parse(json, "/x/config.json"));
        Assert.Contains("/x/config.json", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Open_FolderWithoutConfig_NamesConfigPath()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<TensorFormatException>(() => HfModelFolder.Open(dir.Path));
        Assert.Contains("config.json", e.Message);
    }
}
