using System.Runtime.InteropServices;

namespace CycleQD.Cuda;

/// <summary>A CUDA stream (CUstream). <see cref="Default"/> is the legacy default stream and owns nothing.</summary>
internal sealed class CudaStream : SafeHandle
{
    private CudaStream(bool owns) : base(0, owns) { }

    /// <summary>The legacy default stream (handle 0).</summary>
    public static CudaStream Default { get; } = new(false);

    /// <summary>The CUstream handle.</summary>
    public nint Handle => handle;

    /// <inheritdoc/>
    public override bool IsInvalid => false;

    /// <summary>A new blocking stream in the current context.</summary>
    public static CudaStream Create(CudaContext context)
    {
        context.MakeCurrent();
        CudaStatus.Check(Interop.CudaDriver.cuStreamCreate(out nint s, 0));
        var stream = new CudaStream(true);
        stream.SetHandle(s);
        return stream;
    }

    /// <summary>Waits until all work queued on this stream has finished.</summary>
    public void Synchronize() => CudaStatus.Check(Interop.CudaDriver.cuStreamSynchronize(handle));

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => handle == 0 || Interop.CudaDriver.cuStreamDestroy(handle) == Interop.CUresult.CUDA_SUCCESS;
}

/// <summary>A CUDA event (CUevent) for timing work on a stream.</summary>
internal sealed class CudaEvent : SafeHandle
{
    private CudaEvent() : base(0, true) { }

    /// <inheritdoc/>
    public override bool IsInvalid => handle == 0;

    /// <summary>A new timing event in the current context.</summary>
    public static CudaEvent Create(CudaContext context)
    {
        context.MakeCurrent();
        CudaStatus.Check(Interop.CudaDriver.cuEventCreate(out nint e, 0));
        var ev = new CudaEvent();
        ev.SetHandle(e);
        return ev;
    }

    /// <summary>Records the event on <paramref name="stream"/>.</summary>
    public void Record(CudaStream stream) => CudaStatus.Check(Interop.CudaDriver.cuEventRecord(handle, stream.Handle));

    /// <summary>Milliseconds between two recorded events, after waiting for <paramref name="end"/>.</summary>
    public static float ElapsedMilliseconds(CudaEvent start, CudaEvent end)
    {
        CudaStatus.Check(Interop.CudaDriver.cuEventSynchronize(end.handle));
        CudaStatus.Check(Interop.CudaDriver.cuEventElapsedTime(out float ms, start.handle, end.handle));
        return ms;
    }

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => Interop.CudaDriver.cuEventDestroy(handle) == Interop.CUresult.CUDA_SUCCESS;
}
