using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace CycleQD.Cuda;

/// <summary>
/// One GPU's primary context, made current on the creating thread. Owns the device memory it
/// hands out: buffers freed by <see cref="DeviceBuffer{T}.Dispose"/> go back at once; buffers that
/// were only finalized are queued and freed here, on a thread that owns the context, never on
/// the finalizer thread (whose context is unknown and where a driver call may deadlock).
/// </summary>
internal sealed class CudaContext : IDisposable
{
    private readonly ConcurrentQueue<ulong> _deferredFrees = new();
    private readonly Dictionary<string, CudaModule> _modules = new(StringComparer.Ordinal);
    private nint _context;
    private bool _disposed;

    private CudaContext(CudaDeviceInfo device, nint context, int ccMajor, int ccMinor, int l2Bytes)
    {
        Device = device;
        _context = context;
        ComputeCapabilityMajor = ccMajor;
        ComputeCapabilityMinor = ccMinor;
        L2CacheBytes = l2Bytes;
    }

    /// <summary>The GPU.</summary>
    public CudaDeviceInfo Device { get; }
    /// <summary>Compute capability, major part (8 for A100, 9 for H100/H200).</summary>
    public int ComputeCapabilityMajor { get; }
    /// <summary>Compute capability, minor part.</summary>
    public int ComputeCapabilityMinor { get; }
    /// <summary>L2 cache size in bytes (benchmarks flush it between repeats).</summary>
    public int L2CacheBytes { get; }

    /// <summary>Initialises the driver and retains device <paramref name="ordinal"/>'s primary context.</summary>
    /// <exception cref="CudaUnavailableException">no driver, no GPU, or no such ordinal; the message says which.</exception>
    public static CudaContext Create(int ordinal = 0)
    {
        var status = CudaDeviceProbe.Probe();
        if (!status.Available) throw new CudaUnavailableException(status.Reason ?? "unknown reason");
        if (ordinal < 0 || ordinal >= status.Devices.Count)
            throw new CudaUnavailableException($"GPU {ordinal} requested, the driver reports {status.Devices.Count} ({string.Join(", ", status.Devices.Select(d => d.Name))})");
        CudaStatus.Check(Interop.CudaDriver.cuDeviceGet(out int dev, ordinal));
        CudaStatus.Check(Interop.CudaDriver.cuDevicePrimaryCtxRetain(out nint ctx, dev));
        CudaStatus.Check(Interop.CudaDriver.cuCtxSetCurrent(ctx));
        CudaStatus.Check(Interop.CudaDriver.cuDeviceGetAttribute(out int major, Interop.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
        CudaStatus.Check(Interop.CudaDriver.cuDeviceGetAttribute(out int minor, Interop.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
        CudaStatus.Check(Interop.CudaDriver.cuDeviceGetAttribute(out int l2, Interop.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, dev));
        return new CudaContext(status.Devices[ordinal], ctx, major, minor, l2);
    }

    /// <summary>Makes this context current on the calling thread (needed once per thread that uses it).</summary>
    public void MakeCurrent()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CudaStatus.Check(Interop.CudaDriver.cuCtxSetCurrent(_context));
    }

    /// <summary>Waits for all work on every stream of the context, then frees memory queued by finalizers.</summary>
    public void Synchronize()
    {
        MakeCurrent();
        CudaStatus.Check(Interop.CudaDriver.cuCtxSynchronize());
        DrainDeferredFrees();
    }

    /// <summary>Free and total device memory in bytes, as the driver reports them now.</summary>
    public (long Free, long Total) MemoryInfo()
    {
        MakeCurrent();
        CudaStatus.Check(Interop.CudaDriver.cuMemGetInfo(out nuint free, out nuint total));
        return ((long)free, (long)total);
    }

    /// <summary>Allocates <paramref name="length"/> elements of device memory (uninitialised). The caller owns the buffer.</summary>
    public DeviceBuffer<T> Allocate<T>(long length) where T : unmanaged
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        MakeCurrent();
        DrainDeferredFrees();
        long bytes = checked(length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>());
        ulong ptr = 0;
        if (bytes > 0)
        {
            var rc = Interop.CudaDriver.cuMemAlloc(out ptr, (nuint)bytes);
            if (rc == Interop.CUresult.CUDA_ERROR_OUT_OF_MEMORY)
            {
                var (free, total) = MemoryInfo();
                throw new DeviceMemoryException($"out of device memory allocating {bytes / 1048576.0:F1} MiB on {Device.Name}: {free / 1048576.0:F1} MiB free of {total / 1048576.0:F1} MiB");
            }
            CudaStatus.Check(rc, "cuMemAlloc");
        }
        return new DeviceBuffer<T>(this, ptr, length);
    }

    /// <summary>
    /// The embedded PTX module <paramref name="name"/> (e.g. "merge") for the highest built
    /// target not above this GPU, JIT-compiled by the driver once and cached for the context's life.
    /// </summary>
    /// <exception cref="CudaException">the driver rejected the PTX; the message carries the JIT log.</exception>
    public CudaModule Module(string name)
    {
        MakeCurrent();
        lock (_modules)
        {
            if (_modules.TryGetValue(name, out var m)) return m;
            string ptxName = PtxCatalog.ModuleFor(name, ComputeCapabilityMajor * 10 + ComputeCapabilityMinor);
            m = CudaModule.Load(ptxName, PtxCatalog.Read(ptxName));
            _modules[name] = m;
            return m;
        }
    }

    internal void DeferFree(ulong ptr) => _deferredFrees.Enqueue(ptr);

    internal void Free(ulong ptr)
    {
        if (_disposed) return; // the context is gone and took its memory with it
        MakeCurrent();
        CudaStatus.Check(Interop.CudaDriver.cuMemFree(ptr));
    }

    private void DrainDeferredFrees()
    {
        while (_deferredFrees.TryDequeue(out ulong p)) CudaStatus.Check(Interop.CudaDriver.cuMemFree(p));
    }

    /// <summary>Unloads the modules, frees queued memory and releases the primary context.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        try
        {
            MakeCurrent();
            DrainDeferredFrees();
            foreach (var m in _modules.Values) m.Dispose();
            _modules.Clear();
        }
        finally
        {
            _disposed = true;
            Interop.CudaDriver.cuDeviceGet(out int dev, Device.Ordinal);
            Interop.CudaDriver.cuDevicePrimaryCtxRelease(dev);
            _context = 0;
        }
    }
}
