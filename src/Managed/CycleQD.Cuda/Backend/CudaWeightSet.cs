using CycleQD.Core.Compute;

namespace CycleQD.Cuda.Backend;

/// <summary>
/// A weight set in device memory: one <see cref="DeviceBuffer{T}"/> of storage bytes per tensor,
/// owned by the caller of the <see cref="CudaComputeBackend"/> method that returned it;
/// <see cref="Dispose"/> frees the device memory.
/// </summary>
public sealed class CudaWeightSet : IWeightSet, IWeightMemory
{
    private readonly TensorSpec[] _specs;
    private readonly DeviceBuffer<byte>[] _buffers;

    internal CudaWeightSet(CudaComputeBackend owner, CudaContext context, IReadOnlyList<TensorSpec> specs)
    {
        Owner = owner;
        _specs = [.. specs];
        _buffers = new DeviceBuffer<byte>[_specs.Length];
        try
        {
            for (int i = 0; i < _specs.Length; i++) _buffers[i] = context.Allocate<byte>(_specs[i].ByteLength);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    internal CudaComputeBackend Owner { get; }

    /// <inheritdoc/>
    public IReadOnlyList<TensorSpec> Tensors => _specs;

    /// <summary>Device bytes held.</summary>
    public long Bytes => _specs.Sum(s => s.ByteLength);

    /// <summary>Tensor <paramref name="index"/>'s storage bytes on the device.</summary>
    internal DeviceBuffer<byte> Buffer(int index) => _buffers[index];

    /// <inheritdoc/>
    public WeightMemoryKind Kind => WeightMemoryKind.Cuda;

    /// <inheritdoc/>
    public int DeviceOrdinal => Owner.Device.Ordinal;

    /// <inheritdoc/>
    public nint TensorAddress(int index) => (nint)Pointer(index);

    /// <summary>Device address of tensor <paramref name="index"/>.</summary>
    internal ulong Pointer(int index) => _buffers[index].Pointer;

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var b in _buffers) b?.Dispose();
    }
}
