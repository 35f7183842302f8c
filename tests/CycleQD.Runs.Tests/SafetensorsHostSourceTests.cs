using CycleQD.Core.Compute;
using CycleQD.Tensors;

namespace CycleQD.Runs.Tests;

public sealed class SafetensorsHostSourceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cqd-hostsource-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void OpenMapping_OutlivesTheModelItWasOpenedFrom_AndGivesTheSameBytesInTheSameOrder()
    {
        string path = Path.Combine(_dir, "m.safetensors");
        SafetensorsWriter.WriteFile(path, [
            TensorData.FromSingle("z.weight", DType.BF16, [2, 3], new float[] { 1, 2, 3, 4, 5, 6 }),
            TensorData.FromSingle("a.bias", DType.F32, [2], new float[] { -1, 7 }),
        ]);
        IMappedTensors mapping;
        byte[] z, a;
        IReadOnlyList<TensorSpec> order;
        using (var model = SafetensorsModel.Open(path))
        {
            var source = new SafetensorsHostSource(model, sortByName: true);
            order = source.Tensors;
            z = source.GetBytes("z.weight").ToArray();
            a = source.GetBytes("a.bias").ToArray();
            mapping = source.OpenMapping();
        }
        using (mapping)
        {
            Assert.Equal(["a.bias", "z.weight"], mapping.Tensors.Select(t => t.Name));
            Assert.Equal(order, mapping.Tensors);
            Assert.Equal(z, mapping.GetBytes("z.weight").ToArray());
            Assert.Equal(a, mapping.GetBytes("a.bias").ToArray());
        }
        Assert.Throws<ObjectDisposedException>(() => mapping.GetBytes("a.bias").ToArray());
    }
}
