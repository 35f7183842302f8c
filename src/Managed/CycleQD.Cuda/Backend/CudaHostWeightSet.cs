using System.Runtime.InteropServices;
using CycleQD.Core.Compute;

namespace CycleQD.Cuda.Backend;

/// <summary>
/// A weight set that <see cref="CudaComputeBackend.Upload"/> keeps in host memory in
/// <see cref="WeightResidency.Streamed"/> mode: either a mapping of the source's file that stays open
/// for the set's life (an <see cref="IMappedTensorSource"/>) or a copy in native host memory. The
/// backend streams it to the device whenever an operation reads it. <see cref="Dispose"/> closes the
/// mapping or frees the copy.
/// </summary>
public sealed unsafe class CudaHostWeightSet : IWeightSet, IWeightMemory
{
    private readonly TensorSpec[] _specs;
    private readonly nint[] _addresses;
    private readonly IMappedTensors? _mapping;
    private bool _disposed;

    private CudaHostWeightSet(CudaComputeBackend owner, TensorSpec[] specs, nint[] addresses, IMappedTensors? mapping)
    {
        Owner = owner;
        _specs = specs;
        _addresses = addresses;
        _mapping = mapping;
    }

    /// <summary>Keeps <paramref name="source"/>'s mapping open for the set's life, or copies the bytes when the source has no mapping to hand over.</summary>
    internal static CudaHostWeightSet Create(CudaComputeBackend owner, IHostTensorSource source)
    {
        TensorSpec[] specs = [.. source.Tensors];
        var addresses = new nint[specs.Length];
        if (source is IMappedTensorSource mapped)
        {
            var mapping = mapped.OpenMapping();
            try
            {
                for (int i = 0; i < specs.Length; i++)
                {
                    var bytes = Checked(specs[i], mapping.GetBytes(specs[i].Name));
                    fixed (byte* p = bytes) addresses[i] = (nint)p; // a mapping's spans stay at fixed addresses until it is disposed
                }
                return new CudaHostWeightSet(owner, specs, addresses, mapping);
            }
            catch
            {
                mapping.Dispose();
                throw;
            }
        }
        try
        {
            for (int i = 0; i < specs.Length; i++)
            {
                var bytes = Checked(specs[i], source.GetBytes(specs[i].Name));
                addresses[i] = (nint)NativeMemory.AlignedAlloc((nuint)Math.Max(1, bytes.Length), 64);
                bytes.CopyTo(new Span<byte>((void*)addresses[i], bytes.Length));
            }
            return new CudaHostWeightSet(owner, specs, addresses, null);
        }
        catch
        {
            foreach (var a in addresses) if (a != 0) NativeMemory.AlignedFree((void*)a);
            throw;
        }
    }

    private static ReadOnlySpan<byte> Checked(TensorSpec spec, ReadOnlySpan<byte> bytes) =>
        bytes.Length == spec.ByteLength
            ? bytes
            : throw new ArgumentException($"tensor '{spec.Name}': source has {bytes.Length} bytes, {spec.DType} {spec.ShapeText} needs {spec.ByteLength}");

    internal CudaComputeBackend Owner { get; }

    /// <summary>True when the set reads a mapped file in place rather than a copy.</summary>
    public bool IsMapped => _mapping is not null;

    /// <inheritdoc/>
    public IReadOnlyList<TensorSpec> Tensors => _specs;

    /// <inheritdoc/>
    public WeightMemoryKind Kind => WeightMemoryKind.Host;

    /// <inheritdoc/>
    public int DeviceOrdinal => 0;

    /// <inheritdoc/>
    public nint TensorAddress(int index)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _addresses[index];
    }

    /// <summary>Tensor <paramref name="index"/>'s storage bytes.</summary>
    internal ReadOnlySpan<byte> Bytes(int index) => new((void*)TensorAddress(index), checked((int)_specs[index].ByteLength));

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_mapping is not null) _mapping.Dispose();
        else foreach (var a in _addresses) if (a != 0) NativeMemory.AlignedFree((void*)a);
    }
}
