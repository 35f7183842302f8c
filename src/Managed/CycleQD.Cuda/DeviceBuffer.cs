using System.Runtime.CompilerServices;

namespace CycleQD.Cuda;

/// <summary>
/// Device memory holding <see cref="Length"/> elements of <typeparamref name="T"/>, owned by the
/// caller of <see cref="CudaContext.Allocate{T}"/>. Dispose frees it at once; a buffer that is only
/// finalized is handed back to its context, which frees it on its own thread later.
/// Copies here are synchronous (they wait for the copy); use the stream overloads to overlap.
/// </summary>
internal sealed class DeviceBuffer<T> : IDisposable where T : unmanaged
{
    private readonly CudaContext _context;
    private ulong _ptr;

    internal DeviceBuffer(CudaContext context, ulong ptr, long length)
    {
        _context = context;
        _ptr = ptr;
        Length = length;
    }

    /// <summary>Elements.</summary>
    public long Length { get; }
    /// <summary>Size in bytes.</summary>
    public long Bytes => Length * Unsafe.SizeOf<T>();

    /// <summary>Device address of element 0 (CUdeviceptr).</summary>
    public ulong Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_ptr == 0 && Length > 0, this);
            return _ptr;
        }
    }

    /// <summary>Device address of element <paramref name="index"/>.</summary>
    public ulong At(long index)
    {
        if ((ulong)index > (ulong)Length) throw new ArgumentOutOfRangeException(nameof(index), $"index {index} outside a buffer of {Length}");
        return Pointer + (ulong)(index * Unsafe.SizeOf<T>());
    }

    /// <summary>Copies host → device, from element <paramref name="offset"/>.</summary>
    public unsafe void CopyFrom(ReadOnlySpan<T> source, long offset = 0)
    {
        CheckRange(offset, source.Length);
        if (source.IsEmpty) return;
        _context.MakeCurrent();
        fixed (T* p = source)
            CudaStatus.Check(Interop.CudaDriver.cuMemcpyHtoD(At(offset), p, (nuint)((long)source.Length * sizeof(T))));
    }

    /// <summary>Copies device → host, from element <paramref name="offset"/>.</summary>
    public unsafe void CopyTo(Span<T> destination, long offset = 0)
    {
        CheckRange(offset, destination.Length);
        if (destination.IsEmpty) return;
        _context.MakeCurrent();
        fixed (T* p = destination)
            CudaStatus.Check(Interop.CudaDriver.cuMemcpyDtoH(p, At(offset), (nuint)((long)destination.Length * sizeof(T))));
    }

    /// <summary>
    /// Queues a host → device copy of <paramref name="count"/> elements at <paramref name="host"/> on
    /// <paramref name="stream"/>. The caller keeps that memory alive and unchanged until the stream
    /// has passed the copy; it overlaps with other work only when the memory is page-locked.
    /// </summary>
    public unsafe void CopyFromAsync(nint host, long count, long offset, CudaStream stream)
    {
        CheckRange(offset, count);
        if (count > 0) CudaStatus.Check(Interop.CudaDriver.cuMemcpyHtoDAsync(At(offset), (void*)host, (nuint)(count * sizeof(T)), stream.Handle));
    }

    /// <summary>Queues a device → host copy of <paramref name="count"/> elements into <paramref name="host"/>; same lifetime rule as <see cref="CopyFromAsync"/>.</summary>
    public unsafe void CopyToAsync(nint host, long count, long offset, CudaStream stream)
    {
        CheckRange(offset, count);
        if (count > 0) CudaStatus.Check(Interop.CudaDriver.cuMemcpyDtoHAsync((void*)host, At(offset), (nuint)(count * sizeof(T)), stream.Handle));
    }

    /// <summary>Sets every byte to <paramref name="value"/> and waits for it.</summary>
    public void FillBytes(byte value)
    {
        if (Bytes == 0) return;
        _context.MakeCurrent();
        CudaStatus.Check(Interop.CudaDriver.cuMemsetD8(Pointer, value, (nuint)Bytes));
    }

    /// <summary>Copies device → device (the whole of the shorter buffer), ordered on <paramref name="stream"/>.</summary>
    public void CopyTo(DeviceBuffer<T> destination, CudaStream stream)
    {
        long bytes = Math.Min(Bytes, destination.Bytes);
        if (bytes > 0) CudaStatus.Check(Interop.CudaDriver.cuMemcpyDtoDAsync(destination.Pointer, Pointer, (nuint)bytes, stream.Handle));
    }

    /// <summary>Sets every byte to <paramref name="value"/> (tests poison outputs with 0xFF: NaN in every float type).</summary>
    public void FillBytes(byte value, CudaStream stream)
    {
        if (Bytes > 0) CudaStatus.Check(Interop.CudaDriver.cuMemsetD8Async(Pointer, value, (nuint)Bytes, stream.Handle));
    }

    /// <summary>Reads the whole buffer into a new array (synchronous).</summary>
    public T[] ToArray()
    {
        var a = new T[Length];
        CopyTo(a);
        return a;
    }

    private void CheckRange(long offset, long count)
    {
        if (offset < 0 || offset + count > Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{count} elements at {offset} do not fit a buffer of {Length}");
    }

    /// <summary>Frees the device memory now.</summary>
    public void Dispose()
    {
        ulong p = Interlocked.Exchange(ref _ptr, 0);
        if (p != 0) _context.Free(p);
        GC.SuppressFinalize(this);
    }

    /// <summary>Never calls the driver: queues the pointer for its context to free.</summary>
    ~DeviceBuffer()
    {
        ulong p = Interlocked.Exchange(ref _ptr, 0);
        if (p != 0) _context.DeferFree(p);
    }
}
