namespace CycleQD.Cuda;

/// <summary>
/// One GPU's primary context, made current on the creating thread. Owns the device memory and the
/// native handles (streams, events, modules, cuBLAS and cuSOLVER handles) it hands out: those
/// disposed go back at once, on the disposing thread; those only finalized are queued
/// (<see cref="DeferredReleaseQueue"/>) and released here at the next context call
/// (<see cref="MakeCurrent"/>, which every call goes through) or at <see cref="Dispose"/>, on a thread
/// that owns the context, never on the finalizer thread (whose context is unknown and where a
/// driver call may deadlock).
/// </summary>
internal sealed class CudaContext : IDisposable, INativeHandleOwner
{
    private readonly DeferredReleaseQueue _deferred = new();
    private readonly Dictionary<string, CudaModule> _modules = new(StringComparer.Ordinal);
    private readonly Dictionary<ulong, long> _allocationBytes = [];
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

    /// <summary>
    /// Every device allocation made through <see cref="Allocate{T}"/> and not yet freed, with the
    /// high-water mark. Memory the CUDA runtime, cuBLAS and cuSOLVER allocate on their own (their
    /// workspaces, the context itself) is not in it: that is what the runtime reserve stands for.
    /// </summary>
    public Streaming.DeviceMemoryLedger Ledger { get; } = new();

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

    /// <summary>
    /// Makes this context current on the calling thread (needed once per thread that uses it), then
    /// releases whatever finalizers queued since the last call.
    /// </summary>
    public void MakeCurrent()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CudaStatus.Check(Interop.CudaDriver.cuCtxSetCurrent(_context));
        _deferred.Drain(Release);
    }

    /// <summary>Objects finalized without Dispose that wait for their release on a thread owning the context.</summary>
    internal int PendingReleases => _deferred.Count;

    /// <summary>Waits for all work on every stream of the context, then releases what finalizers queued.</summary>
    public void Synchronize()
    {
        MakeCurrent();
        CudaStatus.Check(Interop.CudaDriver.cuCtxSynchronize());
        _deferred.Drain(Release);
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
            Ledger.Add(bytes, "a device buffer");
            lock (_allocationBytes) _allocationBytes[ptr] = bytes;
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
            m = CudaModule.Load(this, ptxName, PtxCatalog.Read(ptxName));
            _modules[name] = m;
            return m;
        }
    }

    internal void DeferFree(ulong ptr) => _deferred.Enqueue(NativeHandleKind.Memory, ptr);

    internal void Free(ulong ptr)
    {
        if (_disposed) return; // the context is gone and took its memory with it
        MakeCurrent();
        Release(NativeHandleKind.Memory, ptr);
    }

    /// <inheritdoc/>
    void INativeHandleOwner.Defer(NativeHandleKind kind, ulong handle) => _deferred.Enqueue(kind, handle);

    /// <inheritdoc/>
    bool INativeHandleOwner.ReleaseNow(NativeHandleKind kind, ulong handle)
    {
        // Disposed after the context: its objects went with it (the primary context was released).
        if (_disposed) return true;
        try
        {
            // Not MakeCurrent: a failure in someone else's queued release must not keep this one from happening.
            CudaStatus.Check(Interop.CudaDriver.cuCtxSetCurrent(_context), "cuCtxSetCurrent");
            Release(kind, handle);
            return true;
        }
        catch (CudaException)
        {
            // SafeHandle.Dispose must not throw; false reports the failure the way ReleaseHandle does.
            return false;
        }
    }

    /// <summary>Releases one native object; the context must be current on the calling thread.</summary>
    /// <exception cref="CudaException">the driver or library reported a failure.</exception>
    private void Release(NativeHandleKind kind, ulong handle)
    {
        switch (kind)
        {
            case NativeHandleKind.Memory:
                CudaStatus.Check(Interop.CudaDriver.cuMemFree(handle), "cuMemFree");
                long bytes;
                lock (_allocationBytes)
                    if (!_allocationBytes.Remove(handle, out bytes)) bytes = 0;
                Ledger.Remove(bytes);
                break;
            case NativeHandleKind.Stream: CudaStatus.Check(Interop.CudaDriver.cuStreamDestroy((nint)handle), "cuStreamDestroy"); break;
            case NativeHandleKind.Event: CudaStatus.Check(Interop.CudaDriver.cuEventDestroy((nint)handle), "cuEventDestroy"); break;
            case NativeHandleKind.Module: CudaStatus.Check(Interop.CudaDriver.cuModuleUnload((nint)handle), "cuModuleUnload"); break;
            case NativeHandleKind.Cublas: CudaStatus.Check(Interop.Cublas.cublasDestroy((nint)handle), "cublasDestroy"); break;
            case NativeHandleKind.Cusolver: CudaStatus.Check(Interop.Cusolver.cusolverDnDestroy((nint)handle), "cusolverDnDestroy"); break;
            default: throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a native object kind");
        }
    }

    /// <summary>Unloads the modules, frees queued memory and releases the primary context.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        try
        {
            MakeCurrent(); // releases what finalizers queued
            foreach (var m in _modules.Values) m.Dispose();
            _modules.Clear();
            _deferred.Drain(Release);
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
