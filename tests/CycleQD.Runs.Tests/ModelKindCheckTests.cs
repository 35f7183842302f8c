using System.Text.Json.Nodes;
using CycleQD.Runs.Families;
using CycleQD.Runs.Merging;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

/// <summary>A model folder's family by its config.json's model_type, and the files a model made from it carries.</summary>
public class ModelKindCheckTests
{
    private static readonly string Models = Path.Combine(TestPaths.RepoRoot, "models");

    [Fact]
    public void FamilyOfFolder_ShippedModels_AreLlamaAndSam()
    {
        Assert.Same(ModelFamilies.Llama, ModelKindCheck.TryFamilyOfFolder(Path.Combine(Models, "tinyskills", "base")));
        Assert.Same(ModelFamilies.Sam, ModelKindCheck.TryFamilyOfFolder(Path.Combine(Models, "sam-tiny", "base")));
    }

    [Fact]
    public void Require_UnknownModelType_ListsTheKnownKinds()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("m"));
        File.WriteAllText(dir.File("m/config.json"), """{"model_type": "bert"}""");
        var e = Assert.Throws<TensorFormatException>(() => ModelKindCheck.Require(dir.File("m"), ModelFamilies.Sam, "eval --task sam/x"));
        Assert.Equal($"{dir.File("m/config.json")}: model_type \"bert\" is not a kind of model this build runs (known: a Llama-family language model (model_type llama or mistral); " +
                     "a Segment Anything model (SamModel) (model_type sam)); eval --task sam/x needs a Segment Anything model (SamModel) (model_type sam)", e.Message);
    }

    [Fact]
    public void Require_NoModelType_NamesTheConfig()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("m"));
        File.WriteAllText(dir.File("m/config.json"), """{"hidden_size": 8}""");
        var e = Assert.Throws<TensorFormatException>(() => ModelKindCheck.Require(dir.File("m"), ModelFamilies.Llama, "generate"));
        Assert.Equal($"{dir.File("m/config.json")}: missing \"model_type\" (it says which kind of model the folder holds)", e.Message);
    }

    [Fact]
    public void CarriedFiles_Llama_TokenizerFiles_Sam_PreprocessorWhenPresent()
    {
        var llama = ModelFamilies.Llama.CarriedFiles(Path.Combine(Models, "tinyskills", "base"));
        Assert.Contains(llama.CompanionFiles, f => Path.GetFileName(f) == "tokenizer.model");

        using var dir = new TempDir();
        string sam = dir.File("sam");
        Directory.CreateDirectory(sam);
        foreach (var f in Directory.GetFiles(Path.Combine(Models, "sam-tiny", "base"))) File.Copy(f, Path.Combine(sam, Path.GetFileName(f)));
        Assert.Empty(ModelFamilies.Sam.CarriedFiles(sam).CompanionFiles);
        File.WriteAllText(Path.Combine(sam, "preprocessor_config.json"), """{"do_resize": true}""");
        Assert.Equal([Path.Combine(sam, "preprocessor_config.json")], ModelFamilies.Sam.CarriedFiles(sam).CompanionFiles);

        var wrong = Assert.Throws<TensorFormatException>(() => ModelFamilies.Llama.CarriedFiles(sam));
        Assert.Contains("model_type \"sam\": this is a Segment Anything model (SamModel); a Llama-family run needs a Llama-family language model", wrong.Message);
    }

    [Fact]
    public void Merge_SamExperts_WritesASamFolderWithoutTokenizer()
    {
        string sam = Path.Combine(Models, "sam-tiny");
        string yaml = $"""
            merge_method: task_arithmetic
            base_model: {Path.Combine(sam, "base")}
            models:
              - model: {Path.Combine(sam, "expert-a")}
              - model: {Path.Combine(sam, "expert-b")}
            parameters: {"{"} weight: 1.0, lambda: 0.5 {"}"}
            """;
        using var dir = new TempDir();
        MergeOutput.Write(MergeConfig.Parse(yaml, "sam.yaml", dir.Path), dir.File("out"), new MergeOutputOptions(HashInputs: false));
        Assert.Equal(["README.md", "config.json", "model.safetensors"], Directory.GetFiles(dir.File("out")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal("sam", JsonNode.Parse(File.ReadAllText(dir.File("out/config.json")))!["model_type"]!.GetValue<string>());
    }
}
