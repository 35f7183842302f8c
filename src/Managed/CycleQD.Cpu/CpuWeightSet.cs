using System.Runtime.InteropServices;
using CycleQD.Core.Compute;

namespace CycleQD.Cpu;

/// <summary>
/// A weight set in native host memory (one 64-byte-aligned block per tensor, so tensors above 2 GiB
/// need no managed array). Owned by the <see cref="CpuComputeBackend"/> caller that received it;
/// <see cref="Dispose"/> frees the blocks.
/// </summary>
public sealed unsafe class CpuWeightSet : IWeightSet, IWeightMemory
{
    private readonly TensorSpec[] _specs;
    private byte*[] _data;

    internal CpuWeightSet(IReadOnlyList<TensorSpec> specs)
    {
        _specs = [.. specs];
        _data = new byte*[_specs.Length];
        for (int i = 0; i < _specs.Length; i++)
        {
            nuint len = (nuint)Math.Max(1, _specs[i].ByteLength);
            _data[i] = (byte*)NativeMemory.AlignedAlloc(len, 64);
            if (PoisonNewAllocations) NativeMemory.Fill(_data[i], len, 0xFF);
        }
    }

    /// <summary>Tests set this so that every new set starts as all-NaN bytes and a kernel that skips an element shows.</summary>
    internal static bool PoisonNewAllocations { get; set; }

    /// <inheritdoc/>
    public IReadOnlyList<TensorSpec> Tensors => _specs;

    /// <inheritdoc/>
    public WeightMemoryKind Kind => WeightMemoryKind.Host;

    /// <inheritdoc/>
    public int DeviceOrdinal => 0;

    /// <inheritdoc/>
    public nint TensorAddress(int index) => (nint)Pointer(index);

    /// <summary>Start of tensor <paramref name="index"/>'s storage bytes; valid until disposal.</summary>
    internal byte* Pointer(int index)
    {
        ObjectDisposedException.ThrowIf(_data.Length == 0 && _specs.Length > 0, this);
        return _data[index];
    }

    /// <summary>Bytes [offset, offset + length) of tensor <paramref name="index"/>.</summary>
    internal Span<byte> Bytes(int index, long offset, int length) => new(Pointer(index) + offset, length);

    /// <inheritdoc/>
    public void Dispose()
    {
        var data = _data;
        _data = [];
        foreach (var p in data) NativeMemory.AlignedFree(p);
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees host memory that was never disposed.</summary>
    ~CpuWeightSet()
    {
        foreach (var p in _data) NativeMemory.AlignedFree(p);
    }
}
