using CycleQD.Tensors;

namespace CycleQD.Cuda.Streaming;

/// <summary>The kernel a <see cref="TensorStreamer"/> runs on one chunk: the operands' device addresses for elements [first, first + count).</summary>
internal delegate void ChunkKernel(ReadOnlySpan<ulong> operands, long first, long count);

/// <summary>
/// Runs element-wise kernels over tensors whose inputs live in host memory, through a bounded set of
/// staging buffers: two slots, each with one page-locked host buffer and one device buffer of
/// <see cref="ChunkBytes"/> per lane (a lane per host operand). Tensors are cut into chunks of at most
/// <see cref="ChunkBytes"/>; chunk i uses slot i mod 2, so while the compute queue runs chunk i's kernel
/// the host copies chunk i + 1 into the other slot's pinned buffers and the copy queue moves them to
/// the device. Per slot, the host waits for the slot's last copies before overwriting its pinned
/// buffers, the copy queue waits for the slot's last kernel before overwriting its device buffers, and
/// the kernel waits for its copies. Device memory is exactly <see cref="StagingBytes(int, long)"/>,
/// allocated once, whatever the number or size of the tensors. Operands already on the device are
/// read in place. Chunks split a tensor only between elements and the kernels are element-wise, so
/// results equal one launch over the whole tensor.
/// </summary>
internal sealed class TensorStreamer : IDisposable
{
    /// <summary>Default chunk: 64 MiB, a few milliseconds of PCIe transfer, so launch and fence costs stay small.</summary>
    public const long DefaultChunkBytes = 64L << 20;

    /// <summary>Chunk sizes are multiples of this, so every chunk of every storage type starts 16-byte aligned (the kernels' vector path).</summary>
    public const long ChunkAlignment = 4096;

    private const int Slots = 2;
    private const long ParallelCopyBytes = 4L << 20;
    private readonly IStreamingDevice _device;
    private readonly nint[,] _pinned;
    private readonly ulong[,] _staging;
    private readonly bool[] _used = new bool[Slots];
    private int _next;
    private bool _disposed;

    /// <summary>Allocates the staging buffers for up to <paramref name="lanes"/> host operands per kernel.</summary>
    /// <exception cref="ArgumentOutOfRangeException">no lanes, or a chunk that is not a positive multiple of <see cref="ChunkAlignment"/>.</exception>
    /// <exception cref="DeviceMemoryException">the device cannot hold the staging buffers (nothing stays allocated).</exception>
    public TensorStreamer(IStreamingDevice device, int lanes, long chunkBytes = DefaultChunkBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(lanes, 1);
        if (chunkBytes <= 0 || chunkBytes % ChunkAlignment != 0)
            throw new ArgumentOutOfRangeException(nameof(chunkBytes), chunkBytes, $"the staging chunk must be a positive multiple of {ChunkAlignment} bytes");
        _device = device;
        Lanes = lanes;
        ChunkBytes = chunkBytes;
        _pinned = new nint[Slots, lanes];
        _staging = new ulong[Slots, lanes];
        try
        {
            for (int s = 0; s < Slots; s++)
                for (int l = 0; l < lanes; l++)
                {
                    _staging[s, l] = device.Allocate(chunkBytes, "a staging buffer");
                    _pinned[s, l] = device.AllocatePinned(chunkBytes);
                }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Host operands one kernel may have.</summary>
    public int Lanes { get; }

    /// <summary>Bytes of one staging buffer (the largest chunk).</summary>
    public long ChunkBytes { get; }

    /// <summary>Device bytes the staging buffers of <paramref name="lanes"/> lanes take: 2 slots × lanes × chunk.</summary>
    public static long StagingBytes(int lanes, long chunkBytes) => checked(Slots * lanes * chunkBytes);

    /// <summary>The device this streamer stages for.</summary>
    public IStreamingDevice Device => _device;

    /// <summary>
    /// Runs <paramref name="kernel"/> over <paramref name="elements"/> elements of <paramref name="dtype"/>
    /// chunk by chunk, with <paramref name="operands"/> staged or read in place. Returns once every
    /// kernel is queued; the caller synchronises the device before reading results or freeing inputs.
    /// </summary>
    /// <exception cref="ArgumentException">more host operands than lanes.</exception>
    public unsafe void Run(DType dtype, long elements, ReadOnlySpan<StreamOperand> operands, ChunkKernel kernel)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int hostOperands = 0;
        foreach (var o in operands) if (o.IsHost) hostOperands++;
        if (hostOperands > Lanes)
            throw new ArgumentException($"{hostOperands} host operands for a streamer of {Lanes} lanes", nameof(operands));
        int size = DTypes.SizeOf(dtype);
        long chunk = ChunkBytes / size;
        Span<ulong> addresses = stackalloc ulong[operands.Length];
        for (long first = 0; first < elements; first += chunk)
        {
            long count = Math.Min(chunk, elements - first);
            long offset = first * size, bytes = count * size;
            if (hostOperands == 0)
            {
                for (int k = 0; k < operands.Length; k++) addresses[k] = operands[k].Device + (ulong)offset;
                kernel(addresses, first, count);
                continue;
            }
            int s = _next;
            _next = (_next + 1) % Slots;
            if (_used[s])
            {
                // The slot's pinned buffers are still being read by its last copies, its device buffers by its last kernel.
                _device.HostWaitCopied(s);
                _device.CopyWaitConsumed(s);
            }
            int lane = 0;
            for (int k = 0; k < operands.Length; k++)
            {
                if (!operands[k].IsHost)
                {
                    addresses[k] = operands[k].Device + (ulong)offset;
                    continue;
                }
                CopyToPinned(operands[k].Host + (nint)offset, _pinned[s, lane], bytes);
                _device.CopyToDeviceAsync(_pinned[s, lane], _staging[s, lane], bytes);
                addresses[k] = _staging[s, lane];
                lane++;
            }
            _device.RecordCopied(s);
            _device.ComputeWaitCopied(s);
            kernel(addresses, first, count);
            _device.RecordConsumed(s);
            _used[s] = true;
        }
    }

    /// <summary>Host → pinned copy, split over cores when large: one core's memcpy is slower than the bus.</summary>
    private static unsafe void CopyToPinned(nint source, nint destination, long bytes)
    {
        if (bytes < ParallelCopyBytes)
        {
            Buffer.MemoryCopy((void*)source, (void*)destination, bytes, bytes);
            return;
        }
        long slice = ParallelCopyBytes;
        Parallel.For(0, (bytes + slice - 1) / slice, i =>
        {
            long start = i * slice, n = Math.Min(slice, bytes - start);
            Buffer.MemoryCopy((void*)(source + (nint)start), (void*)(destination + (nint)start), n, n);
        });
    }

    /// <summary>Waits for the queues, then frees the staging buffers.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_used[0] || _used[1]) _device.Synchronize();
        for (int s = 0; s < Slots; s++)
            for (int l = 0; l < Lanes; l++)
            {
                if (_staging[s, l] != 0) _device.Free(_staging[s, l]);
                if (_pinned[s, l] != 0) _device.FreePinned(_pinned[s, l]);
            }
    }
}
