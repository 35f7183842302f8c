using CycleQD.Onnx.Runtime;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

/// <summary>Each broken model folder gives one error naming the file and, where one is at fault, the tensor.</summary>
public sealed class BadModelFolderTests
{
    private static TempDir CopyStories(Func<TensorInfo, SafetensorsModel, TensorData?>? rewrite = null)
    {
        var dir = new TempDir();
        foreach (var f in Directory.GetFiles(TestPaths.Stories260K))
            if (Path.GetFileName(f) != "model.safetensors") File.Copy(f, dir.File(Path.GetFileName(f)));
        using var src = SafetensorsModel.Open(TestPaths.Stories260K);
        var tensors = new List<TensorData>();
        foreach (var t in src.Tensors)
        {
            var data = rewrite?.Invoke(t, src) ?? TensorData.FromBytes(t.Name, t.DType, t.Shape, src.GetBytes(t.Name).ToArray());
            if (data.Name.Length > 0) tensors.Add(data);
        }
        SafetensorsWriter.WriteFile(dir.File("model.safetensors"), tensors);
        return dir;
    }

    private static readonly TensorData Drop = new("dropped", DType.F32, [0], _ => { });

    [Fact]
    public void CopiedFolder_Opens()
    {
        using var dir = CopyStories();
        using var model = LlamaModel.Open(dir.Path);
        Assert.Equal(5, model.Session.Config.NumHiddenLayers);
    }

    [Fact]
    public void MissingTensor_ErrorNamesTensor()
    {
        const string name = "model.layers.3.mlp.up_proj.weight";
        using var dir = CopyStories((t, _) => t.Name == name ? Drop : null);
        var tensors = SafetensorsModel.Open(dir.Path);
        Assert.False(tensors.Contains(name));
        tensors.Dispose();
        var e = Assert.Throws<TensorFormatException>(() => LlamaModel.Open(dir.Path));
        Assert.Contains(name, e.Message);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void WrongShape_ErrorNamesTensorAndShapes()
    {
        const string name = "model.layers.1.self_attn.k_proj.weight";
        using var dir = CopyStories((t, src) => t.Name == name
            ? TensorData.FromSingle(name, DType.F32, [16, 64], src.ReadSingle(name).AsMemory(0, 16 * 64))
            : null);
        var e = Assert.Throws<TensorFormatException>(() => LlamaModel.Open(dir.Path));
        Assert.Contains(name, e.Message);
        Assert.Contains("[16, 64]", e.Message);
        Assert.Contains("[32, 64]", e.Message);
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void ExtraBiasTensor_ErrorNamesTensor()
    {
        const string name = "model.layers.0.self_attn.q_proj.bias";
        using var dir = CopyStories();
        using (var src = SafetensorsModel.Open(TestPaths.Stories260K))
        {
            var tensors = src.Tensors.Select(t => TensorData.FromBytes(t.Name, t.DType, t.Shape, src.GetBytes(t.Name).ToArray())).ToList();
            tensors.Add(TensorData.FromSingle(name, DType.F32, [64], new float[64]));
            SafetensorsWriter.WriteFile(dir.File("model.safetensors"), tensors);
        }
        var e = Assert.Throws<TensorFormatException>(() => LlamaModel.Open(dir.Path));
        Assert.Contains(name, e.Message);
        Assert.Contains("not part of the Llama graph", e.Message);
    }

    [Fact]
    public void UnsupportedModelType_ErrorNamesConfig()
    {
        using var dir = CopyStories();
        File.WriteAllText(dir.File("config.json"), File.ReadAllText(dir.File("config.json")).Replace("\"model_type\": \"llama\"", "\"model_type\": \"gpt_neox\""));
        var e = Assert.Throws<TensorFormatException>(() => LlamaModel.Open(dir.Path));
        Assert.Contains("gpt_neox", e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void MissingTokenizer_ErrorNamesFolder()
    {
        using var dir = CopyStories();
        File.Delete(dir.File("tokenizer.model"));
        var e = Assert.Throws<TensorFormatException>(() => LlamaModel.Open(dir.Path));
        Assert.Contains("tokenizer.model", e.Message);
        Assert.Contains(dir.Path, e.Message);
    }
}
