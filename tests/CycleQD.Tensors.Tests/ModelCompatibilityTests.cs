using CycleQD.Testing;
using CycleQD.Tensors;

namespace CycleQD.Tensors.Tests;

public class ModelCompatibilityTests
{
    private static SafetensorsModel Write(TempDir dir, string name, params (string Name, long[] Shape, DType DType)[] tensors)
    {
        string sub = Path.Combine(dir.Path, name);
        SafetensorsWriter.WriteModel(sub, tensors.Select(t => new TensorData(t.Name, t.DType, t.Shape,
            s => s.Write(new byte[t.Shape.Aggregate(1L, (a, b) => a * b) * DTypes.SizeOf(t.DType)]))).ToList());
        return SafetensorsModel.Open(sub);
    }

    [Fact]
    public void SameNamesAndShapes_DifferentDTypes_AreCompatible()
    {
        using var dir = new TempDir();
        using var a = Write(dir, "a", ("x", [2, 3], DType.F32), ("y", [4], DType.F32));
        using var b = Write(dir, "b", ("x", [2, 3], DType.BF16), ("y", [4], DType.F16));
        Assert.Null(ModelCompatibility.FirstDifference(a, b));
    }

    [Fact]
    public void ShapeMismatch_NamesTensorAndBothShapes()
    {
        using var dir = new TempDir();
        using var a = Write(dir, "a", ("x", [2, 3], DType.F32), ("y", [4], DType.F32));
        using var b = Write(dir, "b", ("x", [2, 3], DType.F32), ("y", [5], DType.F32));
        string? diff = ModelCompatibility.FirstDifference(a, b);
        Assert.NotNull(diff);
        Assert.Contains("'y'", diff);
        Assert.Contains("[4]", diff);
        Assert.Contains("[5]", diff);
        var e = Assert.Throws<TensorFormatException>(() => ModelCompatibility.EnsureCompatible(a, b));
        Assert.Contains("'y'", e.Message);
    }

    [Fact]
    public void MissingTensorEitherSide_IsNamed()
    {
        using var dir = new TempDir();
        using var a = Write(dir, "a", ("x", [2], DType.F32));
        using var b = Write(dir, "b", ("x", [2], DType.F32), ("extra", [1], DType.F32));
        Assert.Contains("'extra'", ModelCompatibility.FirstDifference(a, b));
        Assert.Contains("'extra'", ModelCompatibility.FirstDifference(b, a));
    }
}
