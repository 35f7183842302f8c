using CycleQD.Tensors;

namespace CycleQD.Core.Compute;

/// <summary>One named tensor of a weight set.</summary>
/// <param name="Name">Tensor name as in safetensors (e.g. "model.layers.0.mlp.up_proj.weight").</param>
/// <param name="DType">Storage type: F32, F16 or BF16 (arithmetic is always float32).</param>
/// <param name="Shape">Dimensions, outermost first (row-major).</param>
public sealed record TensorSpec(string Name, DType DType, long[] Shape)
{
    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, d) => checked(a * d));

    /// <summary>Bytes in storage.</summary>
    public long ByteLength => checked(ElementCount * DTypes.SizeOf(DType));

    /// <summary>"[a, b]".</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// A model's weights as a compute backend holds them (host arrays for the CPU backend, device
/// buffers for a GPU one). Opaque on purpose: callers move bytes in and out only through
/// <see cref="IComputeBackend.Upload"/> and <see cref="IComputeBackend.Download"/>. The backend that
/// created it owns the memory; <see cref="IDisposable.Dispose"/> releases it. Not thread-safe.
/// </summary>
public interface IWeightSet : IDisposable
{
    /// <summary>The tensors, in a fixed order; a tensor's position is its index for per-tensor random streams.</summary>
    IReadOnlyList<TensorSpec> Tensors { get; }
}

/// <summary>
/// Host-side tensor bytes to upload (a safetensors model, an in-memory model). The span returned
/// for a name is valid until the next call or until the source is disposed, whichever comes first.
/// </summary>
public interface IHostTensorSource
{
    /// <summary>The tensors, in the order the weight set will keep.</summary>
    IReadOnlyList<TensorSpec> Tensors { get; }

    /// <summary>Little-endian storage bytes of tensor <paramref name="name"/> (length = its <see cref="TensorSpec.ByteLength"/>).</summary>
    ReadOnlySpan<byte> GetBytes(string name);
}

/// <summary>An <see cref="IHostTensorSource"/> over byte arrays held in memory.</summary>
public sealed class InMemoryTensorSource : IHostTensorSource
{
    private readonly Dictionary<string, byte[]> _bytes = new(StringComparer.Ordinal);
    private readonly List<TensorSpec> _specs = [];

    /// <inheritdoc/>
    public IReadOnlyList<TensorSpec> Tensors => _specs;

    /// <summary>Adds a tensor; <paramref name="bytes"/> is kept, not copied.</summary>
    public InMemoryTensorSource Add(TensorSpec spec, byte[] bytes)
    {
        if (bytes.Length != spec.ByteLength)
            throw new ArgumentException($"tensor '{spec.Name}': {bytes.Length} bytes given, {spec.DType} {spec.ShapeText} needs {spec.ByteLength}");
        _bytes.Add(spec.Name, bytes);
        _specs.Add(spec);
        return this;
    }

    /// <summary>Adds a tensor from float32 values, encoded in <paramref name="dtype"/>.</summary>
    public InMemoryTensorSource Add(string name, DType dtype, long[] shape, ReadOnlySpan<float> values)
    {
        var spec = new TensorSpec(name, dtype, shape);
        var bytes = new byte[spec.ByteLength];
        DTypeConversion.FromSingle(values, dtype, bytes);
        return Add(spec, bytes);
    }

    /// <inheritdoc/>
    public ReadOnlySpan<byte> GetBytes(string name) =>
        _bytes.TryGetValue(name, out var b) ? b : throw new KeyNotFoundException($"no tensor '{name}'");
}
