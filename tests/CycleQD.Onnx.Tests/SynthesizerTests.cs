using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Onnx.Synthesis;
using CycleQD.Onnx.Tokenization;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

public sealed class SynthesizerTests
{
    private static SynthesisOptions Tiny(int experts = 2) => new() { Shape = "tiny", Experts = experts, Threads = 2 };

    [Fact]
    public void Tiny_WritesLoadableFoldersWithTheShapesLayoutAndDtype()
    {
        using var dir = new TempDir();
        string outDir = Path.Combine(dir.Path, "set");
        var result = LlamaSynthesizer.Write(outDir, Tiny(), cancellationToken: TestContext.Current.CancellationToken);

        Assert.Equal(["base", "expert-1", "expert-2"], result.Models.Select(Path.GetFileName).ToArray());
        var expected = SyntheticShapes.Get("tiny");
        long bytes = 0;
        foreach (var folder in result.Models)
        {
            var hf = HfModelFolder.Open(folder);
            Assert.Equal(expected with { TorchDtype = "bfloat16", BosTokenId = 128000, EosTokenIds = hf.Config.EosTokenIds }, hf.Config);
            Assert.Equal([128001, 128009], hf.Config.EosTokenIds.ToArray());
            using var weights = hf.OpenWeights();
            var layout = LlamaWeightLayout.For(hf.Config);
            Assert.Equal(layout.Select(s => s.Name).Order(StringComparer.Ordinal), weights.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
            foreach (var spec in layout)
            {
                var info = weights.GetInfo(spec.Name);
                Assert.Equal(DType.BF16, info.DType);
                Assert.Equal(spec.Shape, info.Shape);
            }
            weights.ThrowIfNonFinite();
            bytes += weights.TotalBytes;
        }
        Assert.Equal(LlamaSynthesizer.PlannedBytes(Tiny()), bytes);
        Assert.Equal(bytes, result.BytesWritten);
        Assert.True(File.Exists(Path.Combine(outDir, LlamaSynthesizer.ManifestFile)));
    }

    [Fact]
    public void SameSeed_GivesTheSameBytesWhateverTheThreadCount_AnotherSeedDiffers()
    {
        using var dir = new TempDir();
        var ct = TestContext.Current.CancellationToken;
        var one = LlamaSynthesizer.Write(Path.Combine(dir.Path, "a"), Tiny(1) with { Threads = 1 }, cancellationToken: ct);
        var two = LlamaSynthesizer.Write(Path.Combine(dir.Path, "b"), Tiny(1) with { Threads = 2 }, cancellationToken: ct);
        var other = LlamaSynthesizer.Write(Path.Combine(dir.Path, "c"), Tiny(1) with { Seed = 2 }, cancellationToken: ct);
        for (int m = 0; m < 2; m++)
        {
            byte[] a = File.ReadAllBytes(Path.Combine(one.Models[m], "model.safetensors"));
            Assert.Equal(a, File.ReadAllBytes(Path.Combine(two.Models[m], "model.safetensors")));
            Assert.NotEqual(a, File.ReadAllBytes(Path.Combine(other.Models[m], "model.safetensors")));
        }
    }

    [Fact]
    public void Base_IsUniformInitWithUnitNorms_ExpertsDifferByTheConfiguredAmounts()
    {
        using var dir = new TempDir();
        // Float32 so that rounding does not blur the perturbation's statistics.
        var options = Tiny(2) with { DType = DType.F32, Rank = 4, LowRankScale = 0.05, DenseScale = 0.01 };
        var result = LlamaSynthesizer.Write(Path.Combine(dir.Path, "set"), options, cancellationToken: TestContext.Current.CancellationToken);
        using var b = SafetensorsModel.Open(result.Models[0]);
        using var e1 = SafetensorsModel.Open(result.Models[1]);
        using var e2 = SafetensorsModel.Open(result.Models[2]);

        const string matrix = "model.layers.1.mlp.up_proj.weight"; // 192 × 64
        float[] w = b.ReadSingle(matrix), w1 = e1.ReadSingle(matrix), w2 = e2.ReadSingle(matrix);
        double mean = w.Average(x => (double)x);
        double std = Math.Sqrt(w.Average(x => (x - mean) * (x - mean)));
        Assert.InRange(mean, -0.002, 0.002);
        Assert.InRange(std, 0.02 * 0.95, 0.02 * 1.05);
        Assert.All(w, x => Assert.InRange(x, -0.02 * Math.Sqrt(3) - 1e-6, 0.02 * Math.Sqrt(3) + 1e-6));

        double expectedRelative = Math.Sqrt(0.05 * 0.05 + 0.01 * 0.01);
        Assert.InRange(RelativeDistance(w1, w), expectedRelative * 0.75, expectedRelative * 1.25);
        Assert.InRange(RelativeDistance(w2, w), expectedRelative * 0.75, expectedRelative * 1.25);
        // Independent draws: the two task vectors are about √2 times one apart.
        Assert.InRange(RelativeDistance(w1, w2), expectedRelative * Math.Sqrt(2) * 0.75, expectedRelative * Math.Sqrt(2) * 1.25);

        const string norm = "model.layers.0.input_layernorm.weight";
        Assert.All(b.ReadSingle(norm), x => Assert.Equal(1f, x));
        float[] n1 = e1.ReadSingle(norm);
        double normStd = Math.Sqrt(n1.Average(x => (x - 1.0) * (x - 1.0)));
        Assert.InRange(normStd, 0.01 * 0.7, 0.01 * 1.3);
    }

    [Fact]
    public void WithoutDenseNoise_AnExpertsTaskVectorHasTheConfiguredRank()
    {
        using var dir = new TempDir();
        var options = Tiny(1) with { DType = DType.F32, Rank = 1, DenseScale = 0 };
        var result = LlamaSynthesizer.Write(Path.Combine(dir.Path, "set"), options, cancellationToken: TestContext.Current.CancellationToken);
        using var b = SafetensorsModel.Open(result.Models[0]);
        using var e = SafetensorsModel.Open(result.Models[1]);
        const string name = "model.layers.0.self_attn.q_proj.weight"; // 64 × 64
        float[] w = b.ReadSingle(name), x = e.ReadSingle(name);
        var delta = new double[64, 64];
        for (int i = 0; i < 64; i++) for (int j = 0; j < 64; j++) delta[i, j] = (double)x[i * 64 + j] - w[i * 64 + j];
        // Rank one: every 2×2 minor vanishes up to float32 rounding of the stored weights.
        double scale = 0, worst = 0;
        for (int i = 0; i < 64; i++) for (int j = 0; j < 64; j++) scale = Math.Max(scale, Math.Abs(delta[i, j]));
        for (int i = 1; i < 64; i++)
            for (int j = 1; j < 64; j++)
                worst = Math.Max(worst, Math.Abs(delta[0, 0] * delta[i, j] - delta[0, j] * delta[i, 0]));
        Assert.True(scale > 1e-4, $"the perturbation is empty (largest entry {scale})");
        Assert.True(worst < scale * scale * 1e-2, $"a 2×2 minor of {worst} against entries of {scale}: not rank one");

        // The same with rank 2 is not rank one.
        var rank2 = LlamaSynthesizer.Write(Path.Combine(dir.Path, "set2"), options with { Rank = 2 }, cancellationToken: TestContext.Current.CancellationToken);
        using var e2 = SafetensorsModel.Open(rank2.Models[1]);
        float[] x2 = e2.ReadSingle(name);
        double worst2 = 0;
        for (int i = 1; i < 64; i++)
            for (int j = 1; j < 64; j++)
            {
                double d00 = (double)x2[0] - w[0], dij = (double)x2[i * 64 + j] - w[i * 64 + j];
                double d0j = (double)x2[j] - w[j], di0 = (double)x2[i * 64] - w[i * 64];
                worst2 = Math.Max(worst2, Math.Abs(d00 * dij - d0j * di0));
            }
        Assert.True(worst2 > scale * scale * 0.05, $"rank 2 looks rank one (largest minor {worst2})");
    }

    [Fact]
    public void GeneratedTokenizer_EncodesBytesAndLlama3SpecialTokens_DecodesEveryOrdinaryId()
    {
        using var dir = new TempDir();
        var result = LlamaSynthesizer.Write(Path.Combine(dir.Path, "set"), Tiny(0), cancellationToken: TestContext.Current.CancellationToken);
        var folder = HfModelFolder.Open(result.Models[0]);
        var tokenizer = TextTokenizer.Load(folder);
        Assert.Equal(128000, tokenizer.BosId);
        Assert.Equal(128009, tokenizer.EosId);
        Assert.Equal(128009, tokenizer.MaxTokenId);

        string text = "héllo, wörld ✓ 42";
        var ids = tokenizer.Encode(text);
        Assert.Equal(System.Text.Encoding.UTF8.GetByteCount(text), ids.Count);
        Assert.All(ids, id => Assert.InRange(id, 0, 255));
        Assert.Equal((int)'h', ids[0]);
        Assert.Equal(text, tokenizer.Decode(ids));

        string prompt = ChatTemplate.Render(ChatFormat.Llama3, [new("user", "Hi")], bosToken: tokenizer.BosToken);
        Assert.Equal([128000, 128006, 'u', 's', 'e', 'r', 128007, '\n', '\n', 'H', 'i', 128009, 128006, 'a', 's', 's', 'i', 's', 't', 'a', 'n', 't', 128007, '\n', '\n'],
            tokenizer.Encode(prompt).ToArray());

        // Ids past the bytes are byte pairs, then three-character strings.
        Assert.Equal("ab", tokenizer.Decode([256 + 'a' * 256 + 'b']));
        Assert.Equal("aaa", tokenizer.Decode([256 + 65536]));
        Assert.Equal("aab", tokenizer.Decode([256 + 65536 + 1]));
        Assert.Equal(3, tokenizer.Decode([127999]).Length);
    }

    [Fact]
    public void TinyModel_GeneratesWithItsChatTemplate()
    {
        using var dir = new TempDir();
        var result = LlamaSynthesizer.Write(Path.Combine(dir.Path, "set"), Tiny(1), cancellationToken: TestContext.Current.CancellationToken);
        using var model = LlamaModel.Open(result.Models[1], maxBatch: 2);
        Assert.Equal(ChatFormat.Llama3, model.ChatFormat);
        string prompt = ChatTemplate.Render(ChatFormat.Llama3, [new("user", "Write a loop")], bosToken: model.Tokenizer.BosToken);
        var outputs = model.Generator.Generate([new GenerationRequest(prompt, MaxNewTokens: 5, AddBos: false)], TestContext.Current.CancellationToken);
        Assert.True(outputs[0].TokenIds.Count == 5 || outputs[0].Finish == GenerationFinish.Eos);
        Assert.All(outputs[0].TokenIds, id => Assert.InRange(id, 0, SyntheticShapes.Llama3VocabSize - 1));
    }

    [Fact]
    public void CopiedTokenizer_NamesItsBosAndEosInTheConfig()
    {
        string llama3 = TestPaths.RequireSharedData("tokenizers", "llama3");
        using var dir = new TempDir();
        var result = LlamaSynthesizer.Write(Path.Combine(dir.Path, "set"), Tiny(1) with { TokenizerFrom = llama3 },
            cancellationToken: TestContext.Current.CancellationToken);
        foreach (var m in result.Models)
        {
            var folder = HfModelFolder.Open(m);
            Assert.Equal(128000, folder.Config.BosTokenId);
            Assert.Equal([128001], folder.Config.EosTokenIds.ToArray()); // that tokenizer_config.json's eos_token
            Assert.Equal(File.ReadAllBytes(Path.Combine(llama3, "tokenizer.json")), File.ReadAllBytes(Path.Combine(m, "tokenizer.json")));
            var tokenizer = TextTokenizer.Load(folder);
            Assert.Equal([13347], tokenizer.Encode("Hi").ToArray());
        }
    }

    [Fact]
    public void ExpertsWrittenApart_EqualTheOnesWrittenWithTheBase()
    {
        using var dir = new TempDir();
        var ct = TestContext.Current.CancellationToken;
        var whole = LlamaSynthesizer.Write(Path.Combine(dir.Path, "whole"), Tiny(2), cancellationToken: ct);
        var apart = LlamaSynthesizer.Write(Path.Combine(dir.Path, "experts"), Tiny(2) with { WriteBase = false }, cancellationToken: ct);
        var baseOnly = LlamaSynthesizer.Write(Path.Combine(dir.Path, "base"), Tiny(0), cancellationToken: ct);
        Assert.Equal(["expert-1", "expert-2"], apart.Models.Select(Path.GetFileName).ToArray());
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "experts", "base")));
        Assert.Equal(2 * LlamaSynthesizer.PlannedBytes(Tiny(0)), apart.BytesWritten);
        byte[] Bytes(string folder) => File.ReadAllBytes(Path.Combine(folder, "model.safetensors"));
        Assert.Equal(Bytes(whole.Models[1]), Bytes(apart.Models[0]));
        Assert.Equal(Bytes(whole.Models[2]), Bytes(apart.Models[1]));
        Assert.Equal(Bytes(whole.Models[0]), Bytes(baseOnly.Models[0]));
    }

    [Fact]
    public void SmallShards_WriteAnIndexAndStillLoad()
    {
        using var dir = new TempDir();
        var result = LlamaSynthesizer.Write(Path.Combine(dir.Path, "set"), Tiny(0) with { MaxShardBytes = 4_000_000 },
            cancellationToken: TestContext.Current.CancellationToken);
        string folder = result.Models[0];
        Assert.True(File.Exists(Path.Combine(folder, SafetensorsWriter.IndexFileName)));
        using var weights = SafetensorsModel.Open(folder);
        Assert.True(weights.Files.Count >= 2);
        Assert.Equal(LlamaSynthesizer.PlannedBytes(Tiny(0)), weights.TotalBytes);
    }

    [Fact]
    public void BadRequests_AreRefusedWithWhatIsWrong()
    {
        using var dir = new TempDir();
        var ct = TestContext.Current.CancellationToken;
        File.WriteAllText(dir.File("keep.txt"), "x");
        var full = Assert.Throws<SynthesisTargetException>(() => LlamaSynthesizer.Write(dir.Path, Tiny(), cancellationToken: ct));
        Assert.Contains("not empty", full.Message);
        Assert.Contains(dir.Path, full.Message);

        var shape = Assert.Throws<ArgumentException>(() => LlamaSynthesizer.Write(dir.File("a"), Tiny() with { Shape = "llama9" }, cancellationToken: ct));
        Assert.Contains("llama3-8b", shape.Message);
        Assert.Throws<ArgumentException>(() => LlamaSynthesizer.Write(dir.File("b"), Tiny() with { DType = DType.I64 }, cancellationToken: ct));

        string noTokenizer = Directory.CreateDirectory(dir.File("empty-tokenizer")).FullName;
        var tok = Assert.Throws<TensorFormatException>(() => LlamaSynthesizer.Write(dir.File("c"), Tiny() with { TokenizerFrom = noTokenizer }, cancellationToken: ct));
        Assert.Contains("neither tokenizer.json nor tokenizer.model", tok.Message);
        Assert.Contains(noTokenizer, tok.Message);
        Assert.False(Directory.Exists(dir.File("c")));
    }

    [Fact]
    public void Llama3_8B_HasThePublishedParameterCount()
    {
        // Meta-Llama-3-8B: 8,030,261,248 parameters.
        Assert.Equal(8_030_261_248L, SyntheticShapes.Get("llama3-8b").ParameterCount);
        // Llama-3.2-1B (tied embeddings): 1,235,814,400 parameters.
        Assert.Equal(1_235_814_400L, SyntheticShapes.Get("llama3-1b").ParameterCount);
        Assert.Equal(4, SyntheticShapes.Get("llama3-8b", layers: 4).NumHiddenLayers);
    }

    private static double RelativeDistance(float[] a, float[] b)
    {
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { double d = (double)a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
        return Math.Sqrt(num / den);
    }
}
