using CycleQD.Cuda.Backend;
using CycleQD.Cuda.Kernels;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Streaming;

/// <summary>
/// <see cref="IStreamingDevice"/> on a GPU: kernels on the backend's stream, host → device copies on
/// a second stream, and per staging slot two events (copies done, kernels done) that order the two
/// streams and the host. Device memory comes from <see cref="CudaContext.Allocate{T}"/>, so it is
/// counted in the context's ledger; pinned host memory from cuMemHostAlloc.
/// </summary>
internal sealed class CudaStreamingDevice : IStreamingDevice, IDisposable
{
    private const int Slots = 2;
    private readonly CudaContext _context;
    private readonly CudaStream _compute;
    private readonly CudaStream _copy;
    private readonly CudaKernels _kernels;
    private readonly CudaEvent[] _copied = new CudaEvent[Slots];
    private readonly CudaEvent[] _consumed = new CudaEvent[Slots];
    private readonly Dictionary<ulong, DeviceBuffer<byte>> _buffers = [];
    private readonly HashSet<nint> _pinned = [];

    /// <summary>Streams kernels on <paramref name="compute"/> (not owned) and copies on a stream of its own.</summary>
    public CudaStreamingDevice(CudaContext context, CudaStream compute, CudaKernels kernels)
    {
        _context = context;
        _compute = compute;
        _kernels = kernels;
        _copy = CudaStream.Create(context);
        try
        {
            for (int s = 0; s < Slots; s++)
            {
                _copied[s] = CudaEvent.CreateForOrdering(context);
                _consumed[s] = CudaEvent.CreateForOrdering(context);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public DeviceMemoryLedger Memory => _context.Ledger;

    /// <inheritdoc/>
    public ulong Allocate(long bytes, string purpose)
    {
        var buffer = _context.Allocate<byte>(bytes);
        _buffers.Add(buffer.Pointer, buffer);
        return buffer.Pointer;
    }

    /// <inheritdoc/>
    public void Free(ulong address)
    {
        if (_buffers.Remove(address, out var buffer)) buffer.Dispose();
    }

    /// <inheritdoc/>
    public nint AllocatePinned(long bytes)
    {
        _context.MakeCurrent();
        var rc = Interop.CudaDriver.cuMemHostAlloc(out nint p, (nuint)bytes, 0);
        if (rc == Interop.CUresult.CUDA_ERROR_OUT_OF_MEMORY)
            throw new DeviceMemoryException($"out of page-locked host memory allocating a staging buffer of {bytes / 1048576.0:F1} MiB; lower the staging chunk");
        CudaStatus.Check(rc, "cuMemHostAlloc");
        _pinned.Add(p);
        return p;
    }

    /// <inheritdoc/>
    public void FreePinned(nint address)
    {
        if (!_pinned.Remove(address)) return;
        _context.MakeCurrent();
        CudaStatus.Check(Interop.CudaDriver.cuMemFreeHost(address), "cuMemFreeHost");
    }

    /// <inheritdoc/>
    public unsafe void CopyToDeviceAsync(nint source, ulong destination, long bytes) =>
        CudaStatus.Check(Interop.CudaDriver.cuMemcpyHtoDAsync(destination, (void*)source, (nuint)bytes, _copy.Handle), "cuMemcpyHtoDAsync");

    /// <inheritdoc/>
    public void RecordCopied(int slot) => _copied[slot].Record(_copy);

    /// <inheritdoc/>
    public void HostWaitCopied(int slot) => _copied[slot].Synchronize();

    /// <inheritdoc/>
    public void ComputeWaitCopied(int slot) => _compute.Wait(_copied[slot]);

    /// <inheritdoc/>
    public void RecordConsumed(int slot) => _consumed[slot].Record(_compute);

    /// <inheritdoc/>
    public void CopyWaitConsumed(int slot) => _copy.Wait(_consumed[slot]);

    /// <inheritdoc/>
    public void Merge(DType dtype, ulong baseWeights, ReadOnlySpan<ulong> parents, ReadOnlySpan<float> weights, ulong child, long n) =>
        _kernels.MergeCoefficients(dtype, baseWeights, parents, CudaComputeBackend.Coefficients(weights), child, n, _compute);

    /// <inheritdoc/>
    public void TaskVector(DType dtype, ulong theta, ulong baseWeights, ulong tau, long n) =>
        _kernels.TaskVector(dtype, theta, baseWeights, tau, n, _compute);

    /// <inheritdoc/>
    public void ApplyTaskVector(DType dtype, ulong baseWeights, ulong tau, ulong theta, long n) =>
        _kernels.ApplyTaskVector(dtype, baseWeights, tau, theta, n, _compute);

    /// <inheritdoc/>
    public void Synchronize()
    {
        _copy.Synchronize();
        _compute.Synchronize();
    }

    /// <summary>Waits for both streams, then frees what is left and releases the events and the copy stream.</summary>
    public void Dispose()
    {
        try
        {
            Synchronize();
        }
        finally
        {
            foreach (var b in _buffers.Values) b.Dispose();
            _buffers.Clear();
            foreach (var p in _pinned) Interop.CudaDriver.cuMemFreeHost(p);
            _pinned.Clear();
            foreach (var e in _copied.Concat(_consumed)) e?.Dispose();
            _copy.Dispose();
        }
    }
}
