using System.Security.Cryptography;
using System.Text.Json;
using CycleQD.Core;
using CycleQD.Cpu.Merging;
using CycleQD.Runs.Merging;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

public class ModelMergeTests
{
    private static string Shipped(string name) => Path.Combine(TestPaths.RepoRoot, "models", "tinyskills", name);

    private static Dictionary<string, float[]> ReadAll(string model)
    {
        using var m = SafetensorsModel.Open(model);
        return m.Tensors.ToDictionary(t => t.Name, t => m.ReadSingle(t.Name));
    }

    /// <summary>Copies a model folder, letting <paramref name="edit"/> change its tensor list before the weights are rewritten.</summary>
    internal static string CopyModel(string from, string to, Func<List<TensorData>, List<TensorData>>? edit = null)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from))
            if (!f.EndsWith(".safetensors", StringComparison.Ordinal)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        using var m = SafetensorsModel.Open(from);
        var tensors = m.Tensors.Select(t => TensorData.FromBytes(t.Name, t.DType, t.Shape, m.GetBytes(t.Name).ToArray())).ToList();
        SafetensorsWriter.WriteModel(to, edit?.Invoke(tensors) ?? tensors);
        return to;
    }

    [Fact]
    public void Ties_HardSet_ReproducesPublishedMergedTies()
    {
        string ts = TestPaths.RequireSharedData("models", "tinyskills");
        string reference = TestPaths.RequireSharedData("models", "tinyskills", "merged-ties");
        // The parameters of tinyskills/README.md: k = floor(0.2 · 260032) entries of largest |tau| over
        // the whole flattened task vector, elected sign = sign of the sum, disjoint mean, lambda 1.
        string yaml = $"""
            merge_method: ties
            base_model: {Path.Combine(ts, "base")}
            models:
              - model: {Path.Combine(ts, "expert-code")}
              - model: {Path.Combine(ts, "expert-db")}
              - model: {Path.Combine(ts, "expert-os")}
            parameters: {"{"} weight: 1.0, density: 0.2, trim_scope: model, normalize: true, lambda: 1.0 {"}"}
            """;
        using var dir = new TempDir();
        var spec = MergeConfig.Parse(yaml, "ties.yaml", dir.Path);
        MergeOutput.Write(spec, dir.File("out"), new MergeOutputOptions(HashInputs: false));

        var got = ReadAll(dir.File("out"));
        var want = ReadAll(reference);
        var baseValues = ReadAll(Path.Combine(ts, "base"));
        Assert.Equal(want.Keys.Order(StringComparer.Ordinal), got.Keys.Order(StringComparer.Ordinal));
        double maxAbs = 0, maxUlps = 0, num = 0, den = 0;
        long elements = 0;
        foreach (var (name, w) in want)
        {
            var g = got[name];
            for (int j = 0; j < w.Length; j++)
            {
                double d = Math.Abs((double)g[j] - w[j]);
                maxAbs = Math.Max(maxAbs, d);
                // One ulp of the largest of the result, the base value and the merged task vector: where
                // base + merged cancels, the float32 rounding of the operands, not of the result, bounds the error.
                float bj = baseValues[name][j];
                float scale = MathF.Max(MathF.Max(MathF.Abs(w[j]), MathF.Abs(bj)), MathF.Abs(w[j] - bj));
                maxUlps = Math.Max(maxUlps, d / (MathF.BitIncrement(scale) - scale));
                num += d * d;
                den += (double)w[j] * w[j];
                elements++;
            }
        }
        TestContext.Current.TestOutputHelper?.WriteLine($"TIES vs merged-ties: {elements} values, max |diff| {maxAbs:E3}, max {maxUlps:F2} ulp, ‖diff‖/‖ref‖ {Math.Sqrt(num / den):E3}");
        Assert.Equal(260_032, elements);
        // float32 rounding: the reference merged in float64 and rounded once; this build rounds in float32 on the way.
        Assert.True(maxUlps <= 3, $"max {maxUlps:F2} ulp (max |diff| {maxAbs:E3})");
        Assert.True(Math.Sqrt(num / den) < 1e-7, $"‖diff‖/‖ref‖ = {Math.Sqrt(num / den):E3}");

        // Exactly k = 52006 entries of every task vector clear its threshold, as the reference reports.
        using var merge = ModelMerge.Open(spec);
        var b = baseValues;
        for (int i = 0; i < 3; i++)
        {
            var e = ReadAll(spec.Models[i].Path);
            long kept = b.Sum(kv => kv.Value.Select((x, j) => MathF.Abs(e[kv.Key][j] - x) >= merge.ModelTrims![i].Threshold ? 1L : 0L).Sum());
            Assert.Equal(52_006, kept);
        }
    }

    [Fact]
    public void TaskArithmetic_YamlWithRelativePaths_WritesShardedFolderMatchingFp64Reference()
    {
        using var dir = new TempDir();
        string rel = Path.GetRelativePath(dir.Path, Shipped(""));
        string yamlPath = Experiments.Write(dir, "ta.yaml", $"""
            merge_method: task_arithmetic
            base_model: {rel}/base
            models:
              - model: {rel}/expert-code
                parameters: {"{"} weight: 0.5 {"}"}
              - model: {rel}/expert-db
              - model: {rel}/expert-os
            parameters: {"{"} weight: 1, lambda: 0.7 {"}"}
            """);
        var config = MergeConfig.Load(yamlPath);
        var result = MergeOutput.Write(config.Spec, dir.File("out"), new MergeOutputOptions(MaxShardBytes: 300_000, ConfigText: config.Text,
            Scores: new Dictionary<string, double> { ["tinyskills/db test"] = 0.455 }));

        string outDir = dir.File("out");
        Assert.True(File.Exists(Path.Combine(outDir, SafetensorsWriter.IndexFileName)));
        Assert.True(Directory.GetFiles(outDir, "model-*-of-*.safetensors").Length >= 3);
        foreach (var f in new[] { "config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(Shipped("base"), f)), File.ReadAllBytes(Path.Combine(outDir, f)));
        Assert.Equal("README.md", Path.GetFileName(result.Files[^1]));

        var b = ReadAll(Shipped("base"));
        var e = new[] { "expert-code", "expert-db", "expert-os" }.Select(n => ReadAll(Shipped(n))).ToArray();
        double[] w = [0.5, 1, 1];
        var got = ReadAll(outDir);
        Assert.Equal(b.Count, got.Count);
        double num = 0, den = 0;
        foreach (var (name, bv) in b)
            for (int j = 0; j < bv.Length; j++)
            {
                double r = bv[j] + 0.7 * Enumerable.Range(0, 3).Sum(i => w[i] * ((double)e[i][name][j] - bv[j]));
                num += (got[name][j] - r) * (got[name][j] - r);
                den += r * r;
            }
        Assert.True(Math.Sqrt(num / den) < 1e-7, $"‖out − ref‖/‖ref‖ = {Math.Sqrt(num / den):E3}");

        string card = File.ReadAllText(Path.Combine(outDir, "README.md"));
        string baseSha = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(Shipped("base"), "model.safetensors"))));
        Assert.Contains(baseSha, card);
        Assert.Contains("task_arithmetic", card);
        Assert.Contains("| lambda | 0.7 |", card);
        Assert.Contains("| tinyskills/db test | 0.455 |", card);
        Assert.Contains("weight: 0.5", card); // the merge file itself
    }

    [Fact]
    public void Dare_SameSeed_SameWeights_OtherSeedDiffers()
    {
        using var dir = new TempDir();
        MergeSpec Spec(ulong seed) => new(MergeMethod.DareTies, Shipped("base"),
            [new MergeModel(Shipped("expert-code"), 1, 0.5f), new MergeModel(Shipped("expert-db"), 1, 0.3f)]) { Seed = seed };
        MergeOutput.Write(Spec(1), dir.File("a"), new MergeOutputOptions(HashInputs: false));
        MergeOutput.Write(Spec(1), dir.File("b"), new MergeOutputOptions(HashInputs: false));
        MergeOutput.Write(Spec(2), dir.File("c"), new MergeOutputOptions(HashInputs: false));
        byte[] Weights(string d) => File.ReadAllBytes(Path.Combine(dir.File(d), "model.safetensors"));
        Assert.Equal(Weights("a"), Weights("b"));
        Assert.NotEqual(Weights("a"), Weights("c"));
    }

    [Fact]
    public void Linear_WithoutBase_TakesConfigFromFirstModel_AndConvertsDType()
    {
        using var dir = new TempDir();
        var spec = MergeConfig.Parse($"""
            merge_method: linear
            models:
              - model: {Shipped("expert-db")}
                parameters: {"{"} weight: 3 {"}"}
              - model: {Shipped("expert-os")}
                parameters: {"{"} weight: 1 {"}"}
            dtype: bfloat16
            """, "linear.yaml", dir.Path);
        MergeOutput.Write(spec, dir.File("out"), new MergeOutputOptions(HashInputs: false));
        using var m = SafetensorsModel.Open(dir.File("out"));
        Assert.All(m.Tensors, t => Assert.Equal(DType.BF16, t.DType));
        var db = ReadAll(Shipped("expert-db"));
        var os = ReadAll(Shipped("expert-os"));
        foreach (var t in m.Tensors)
        {
            var got = m.ReadSingle(t.Name);
            for (int j = 0; j < got.Length; j++)
            {
                double r = (3.0 * db[t.Name][j] + os[t.Name][j]) / 4;
                Assert.True(Math.Abs(got[j] - r) <= Math.Abs(r) * (1.0 / 256) + 1e-30, $"{t.Name}[{j}]: {got[j]} vs {r}");
            }
        }
        var config = JsonDocument.Parse(File.ReadAllText(dir.File("out/config.json")));
        Assert.Equal("bfloat16", config.RootElement.GetProperty("torch_dtype").GetString());
    }

    [Fact]
    public void Merge_ExpertMissingATensor_ErrorNamesTheTensor()
    {
        using var dir = new TempDir();
        string bad = CopyModel(Shipped("expert-db"), dir.File("bad"), ts => ts.Where(t => t.Name != "model.layers.2.mlp.up_proj.weight").ToList());
        var spec = new MergeSpec(MergeMethod.TaskArithmetic, Shipped("base"), [new MergeModel(Shipped("expert-code")), new MergeModel(bad)]);
        var ex = Assert.Throws<TensorFormatException>(() => MergeOutput.Write(spec, dir.File("out")));
        Assert.Contains("tensor 'model.layers.2.mlp.up_proj.weight' is in", ex.Message);
        Assert.Contains(bad, ex.Message);
        Assert.False(Directory.Exists(dir.File("out")));
    }

    [Fact]
    public void Merge_ExpertWithOtherShape_ErrorNamesTheTensorAndShapes()
    {
        using var dir = new TempDir();
        string bad = CopyModel(Shipped("expert-db"), dir.File("bad"), ts => ts.Select(t => t.Name == "model.norm.weight"
            ? TensorData.FromSingle(t.Name, DType.F32, [t.Shape[0] + 1], new float[t.Shape[0] + 1]) : t).ToList());
        var spec = new MergeSpec(MergeMethod.Ties, Shipped("base"), [new MergeModel(bad, 1, 0.5f)]);
        var ex = Assert.Throws<TensorFormatException>(() => MergeOutput.Write(spec, dir.File("out")));
        Assert.Contains("tensor 'model.norm.weight' has shape", ex.Message);
    }

    [Fact]
    public void Merge_OutputFolderNotEmpty_IsRefused()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("out"));
        File.WriteAllText(dir.File("out/keep.txt"), "x");
        var spec = new MergeSpec(MergeMethod.TaskArithmetic, Shipped("base"), [new MergeModel(Shipped("expert-db"))]);
        var ex = Assert.Throws<RunDirectoryException>(() => MergeOutput.Write(spec, dir.File("out")));
        Assert.Contains("not empty", ex.Message);
    }

    [Theory]
    [InlineData("merge_method: ties\nbase_model: b\nmodels:\n  - model: e\ncolour: red\n", "line 5: colour: unknown setting")]
    [InlineData("merge_method: slerp\nbase_model: b\nmodels:\n  - model: e\n", "line 1: merge_method: 'slerp' is not one of linear, task_arithmetic, ties, dare_linear, dare_ties")]
    [InlineData("merge_method: ties\nmodels:\n  - model: e\n", "base_model is required by ties")]
    [InlineData("merge_method: ties\nbase_model: b\nmodels:\n  - model: e\n    parameters: {density: [0.2, 0.5]}\n", "models[0].parameters.density: lists (per-layer gradients) are not supported")]
    [InlineData("merge_method: ties\nbase_model: b\nslices:\n  - sources: []\n", "slices: slices are not supported")]
    [InlineData("merge_method: dare_ties\nbase_model: b\nmodels:\n  - model: e\n    parameters: {weight: 1, density: 0}\n", "density 0 must be in (0, 1]")]
    [InlineData("merge_method: ties\nbase_model: b\nmodels:\n  - model: e\n    parameters: {weight: 1, density: 0}\n", "density 0 must be in (0, 1]")]
    [InlineData("merge_method: ties\nbase_model: b\nmodels:\n  - model: e\nparameters: {weight: 1, trim_scope: layer}\n", "parameters.trim_scope: 'layer' is not tensor or model")]
    [InlineData("merge_method: linear\nmodels:\n  - model: e\n    parameters: {weight: 1}\ndtype: int8\n", "dtype: 'int8' is not float32, float16 or bfloat16")]
    [InlineData("merge_method: ties\nbase_model: b\nmodels:\n  - model: b\n", "no model to merge besides the base model")]
    // mergekit's rule: every merged model has a weight, its own or the one under parameters.
    [InlineData("merge_method: ties\nbase_model: b\nmodels:\n  - model: e\n    parameters: {density: 0.5}\n", "line 4: models[0]: e: weight is required")]
    [InlineData("merge_method: linear\nmodels:\n  - model: e\n    parameters: {weight: 1}\n  - model: f\n", "line 5: models[1]: f: weight is required")]
    // Options that do not apply to the method are refused, naming the key.
    [InlineData("merge_method: dare_linear\nbase_model: b\nmodels:\n  - model: e\nparameters:\n  weight: 1\n  trim_scope: model\n", "line 7: parameters.trim_scope: does not apply to dare_linear")]
    [InlineData("merge_method: task_arithmetic\nbase_model: b\nmodels:\n  - model: e\nparameters: {weight: 1, density: 0.5}\n", "parameters.density: does not apply to task_arithmetic")]
    [InlineData("merge_method: task_arithmetic\nbase_model: b\nmodels:\n  - model: e\n    parameters: {weight: 1, density: 0.5}\n", "models[0].parameters.density: does not apply to task_arithmetic")]
    [InlineData("merge_method: task_arithmetic\nbase_model: b\nmodels:\n  - model: e\nparameters: {weight: 1, rescale: true}\n", "parameters.rescale: does not apply to task_arithmetic")]
    [InlineData("merge_method: linear\nmodels:\n  - model: e\nparameters: {weight: 1, lambda: 0.5}\n", "parameters.lambda: does not apply to linear")]
    [InlineData("merge_method: linear\nmodels:\n  - model: e\nparameters: {weight: 1, int8_mask: true}\n", "parameters.int8_mask: does not apply to linear")]
    [InlineData("merge_method: ties\nbase_model: b\nmodels:\n  - model: e\nparameters: {weight: 1}\nrandom_seed: 3\n", "line 6: random_seed: does not apply to ties")]
    [InlineData("merge_method: ties\nbase_model: b\nmodels:\n  - model: e\nparameters: {weight: 1, rescale: inverse_density}\n", "parameters.rescale: inverse_density is DARE's rescale")]
    [InlineData("merge_method: dare_ties\nbase_model: b\nmodels:\n  - model: e\nparameters: {weight: 1, rescale: l2}\n", "parameters.rescale: 'l2' is not true, false or inverse_density")]
    public void Config_BadSetting_OneErrorNamingFileAndKey(string yaml, string expected)
    {
        var ex = Assert.Throws<ConfigurationException>(() => MergeConfig.Parse(yaml, "bad.yaml", "/tmp"));
        Assert.StartsWith("bad.yaml: ", ex.Message);
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void Config_MergekitForm_ReadsDefaultsAndSkipsTheBase()
    {
        var spec = MergeConfig.Parse("""
            models:
              - model: base
              - model: a
                parameters: {weight: 0.4, density: 0.53}
              - model: b
            merge_method: dare_ties
            base_model: base
            parameters:
              int8_mask: true
              weight: 1.0
              density: 0.7
            random_seed: 42
            dtype: bfloat16
            """, "m.yaml", "/models");
        Assert.Equal(MergeMethod.DareTies, spec.Method);
        Assert.Equal("/models/base", spec.BaseModel);
        Assert.Equal([new MergeModel("/models/a", 0.4f, 0.53f), new MergeModel("/models/b", 1f, 0.7f)], spec.Models);
        Assert.Equal(42UL, spec.Seed);
        Assert.Equal(DType.BF16, spec.OutputDType);
        Assert.False(spec.EffectiveNormalize);
        Assert.Null(spec.Rescale);
        Assert.Equal(MergeRescale.L1Norm, spec.EffectiveRescale);
    }

    [Theory]
    [InlineData("ties", "", MergeRescale.None)]
    [InlineData("ties", "rescale: true", MergeRescale.L1Norm)]
    [InlineData("dare_linear", "", MergeRescale.L1Norm)]
    [InlineData("dare_linear", "rescale: false", MergeRescale.None)]
    [InlineData("dare_ties", "rescale: inverse_density", MergeRescale.InverseDensity)]
    public void Config_Rescale_FollowsMergekitDefaultsAndTakesInverseDensityForDare(string method, string rescale, MergeRescale expected)
    {
        var spec = MergeConfig.Parse($"merge_method: {method}\nbase_model: b\nmodels:\n  - model: e\nparameters:\n  weight: 1\n  density: 0.5\n  {rescale}\n", "r.yaml", "/m");
        Assert.Equal(expected, spec.EffectiveRescale);
    }

    [Fact]
    public void Spec_OptionForAnotherMethod_IsRefusedNamingTheKey()
    {
        using var dir = new TempDir();
        var dare = new MergeSpec(MergeMethod.DareLinear, Shipped("base"), [new MergeModel(Shipped("expert-db"), 1, 0.5f)]) { TrimScope = TrimScope.Model };
        Assert.Contains("trim_scope does not apply to dare_linear", Assert.Throws<ArgumentException>(() => MergeOutput.Write(dare, dir.File("a"))).Message);
        var ta = new MergeSpec(MergeMethod.TaskArithmetic, Shipped("base"), [new MergeModel(Shipped("expert-db"))]) { Rescale = MergeRescale.L1Norm };
        Assert.Contains("rescale does not apply to task_arithmetic", Assert.Throws<ArgumentException>(() => MergeOutput.Write(ta, dir.File("b"))).Message);
        var ties = new MergeSpec(MergeMethod.Ties, Shipped("base"), [new MergeModel(Shipped("expert-db"), 1, 0.5f)]) { Rescale = MergeRescale.InverseDensity };
        Assert.Contains("inverse_density is DARE's rescale", Assert.Throws<ArgumentException>(() => MergeOutput.Write(ties, dir.File("c"))).Message);
        Assert.False(Directory.Exists(dir.File("a")) || Directory.Exists(dir.File("b")) || Directory.Exists(dir.File("c")));
    }

    [Fact]
    public void Ties_DensityKeepingNoEntryOfATensor_ErrorNamesTheTensor_AndWritesNothing()
    {
        // ⌊0.01 · 64⌋ = 0 for the 64-value norm weights; the embedding (32768 values) would keep 327.
        using var dir = new TempDir();
        var spec = new MergeSpec(MergeMethod.Ties, Shipped("base"), [new MergeModel(Shipped("expert-db"), 1, 0.01f)]);
        var ex = Assert.Throws<ArgumentException>(() => MergeOutput.Write(spec, dir.File("out")));
        Assert.Contains(Shipped("expert-db"), ex.Message);
        Assert.Contains("density 0.01 keeps no entry of tensor 'model.layers.0.input_layernorm.weight' (64 values", ex.Message);
        Assert.False(Directory.Exists(dir.File("out")));

        // Over the whole model the same density keeps 2600 entries, so trim_scope: model merges.
        MergeOutput.Write(spec with { TrimScope = TrimScope.Model }, dir.File("model"), new MergeOutputOptions(HashInputs: false));
        Assert.True(File.Exists(Path.Combine(dir.File("model"), "model.safetensors")));
    }

    [Fact]
    public void Ties_RescaleTrue_EveryTensorKeepsExactlyKEntries_AndItsTaskVectorsL1Norm()
    {
        // One expert, w = 1: the disjoint mean is the trimmed τ itself, so out − base = τ̂ · Σ|τ| / Σ|τ̂| per tensor.
        using var dir = new TempDir();
        var spec = MergeConfig.Parse($"""
            merge_method: ties
            base_model: {Shipped("base")}
            models:
              - model: {Shipped("expert-code")}
            parameters: {"{"} weight: 1.0, density: 0.25, rescale: true {"}"}
            """, "ties.yaml", dir.Path);
        MergeOutput.Write(spec, dir.File("out"), new MergeOutputOptions(HashInputs: false));
        var b = ReadAll(Shipped("base"));
        var e = ReadAll(Shipped("expert-code"));
        var got = ReadAll(dir.File("out"));
        int checkedTensors = 0;
        foreach (var (name, bv) in b)
        {
            int n = bv.Length;
            var tau = Enumerable.Range(0, n).Select(j => e[name][j] - bv[j]).ToArray();
            double before = tau.Sum(t => Math.Abs((double)t));
            if (before < 1e-7) continue;  // an untouched tensor (mergekit's guard: no rescale)
            long k = (long)Math.Floor(0.25 * n);
            var keep = Enumerable.Range(0, n).OrderByDescending(j => MathF.Abs(tau[j])).ThenBy(j => j).Take((int)k).ToHashSet();
            double after = keep.Sum(j => Math.Abs((double)tau[j]));
            double gain = before / after;
            for (int j = 0; j < n; j++)
            {
                double want = bv[j] + (keep.Contains(j) ? tau[j] * gain : 0);
                Assert.True(Math.Abs(got[name][j] - want) <= 1e-6 * Math.Max(1, Math.Abs(want)), $"{name}[{j}]: {got[name][j]} vs {want}");
            }
            double l1 = Enumerable.Range(0, n).Sum(j => Math.Abs((double)got[name][j] - bv[j]));
            Assert.True(Math.Abs(l1 / before - 1) < 1e-4, $"{name}: Σ|out − base| / Σ|τ| = {l1 / before}");
            checkedTensors++;
        }
        Assert.True(checkedTensors > 10, $"{checkedTensors} tensors with a task vector");
        Assert.Contains("| rescale | true", File.ReadAllText(Path.Combine(dir.File("out"), "README.md")));
    }
}
