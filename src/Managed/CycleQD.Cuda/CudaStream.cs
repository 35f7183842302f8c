namespace CycleQD.Cuda;

/// <summary>
/// A CUDA stream (CUstream). <see cref="Default"/> is the legacy default stream and owns nothing.
/// Released as every <see cref="CudaHandle"/>: at once by Dispose, by its context when only finalized.
/// </summary>
internal sealed class CudaStream : CudaHandle
{
    private CudaStream(CudaContext? context) : base(context, NativeHandleKind.Stream) { }

    /// <summary>The legacy default stream (handle 0).</summary>
    public static CudaStream Default { get; } = new(null);

    /// <summary>The CUstream handle.</summary>
    public nint Handle => handle;

    /// <inheritdoc/>
    public override bool IsInvalid => false;

    /// <summary>A new blocking stream in <paramref name="context"/>.</summary>
    public static CudaStream Create(CudaContext context)
    {
        context.MakeCurrent();
        CudaStatus.Check(Interop.CudaDriver.cuStreamCreate(out nint s, 0));
        var stream = new CudaStream(context);
        stream.Attach(s);
        return stream;
    }

    /// <summary>Waits until all work queued on this stream has finished.</summary>
    public void Synchronize() => CudaStatus.Check(Interop.CudaDriver.cuStreamSynchronize(handle));

    /// <summary>Makes work queued on this stream from now on wait for <paramref name="evt"/>'s last record (the host does not wait).</summary>
    public void Wait(CudaEvent evt) => CudaStatus.Check(Interop.CudaDriver.cuStreamWaitEvent(handle, evt.Handle, 0), "cuStreamWaitEvent");

}

/// <summary>A CUDA event (CUevent) for timing work on a stream; released as every <see cref="CudaHandle"/>.</summary>
internal sealed class CudaEvent : CudaHandle
{
    private CudaEvent(CudaContext context) : base(context, NativeHandleKind.Event) { }

    /// <summary>CU_EVENT_DISABLE_TIMING: an event only for ordering, cheaper to record and wait on.</summary>
    private const uint DisableTiming = 0x2;

    /// <summary>A new timing event in <paramref name="context"/>.</summary>
    public static CudaEvent Create(CudaContext context) => Create(context, 0);

    /// <summary>A new event for ordering streams and the host (no timing) in <paramref name="context"/>.</summary>
    public static CudaEvent CreateForOrdering(CudaContext context) => Create(context, DisableTiming);

    private static CudaEvent Create(CudaContext context, uint flags)
    {
        context.MakeCurrent();
        CudaStatus.Check(Interop.CudaDriver.cuEventCreate(out nint e, flags));
        var ev = new CudaEvent(context);
        ev.Attach(e);
        return ev;
    }

    /// <summary>The CUevent handle.</summary>
    public nint Handle => handle;

    /// <summary>Blocks the host until the work before the event's last record has finished (at once when never recorded).</summary>
    public void Synchronize() => CudaStatus.Check(Interop.CudaDriver.cuEventSynchronize(handle), "cuEventSynchronize");

    /// <summary>Records the event on <paramref name="stream"/>.</summary>
    public void Record(CudaStream stream) => CudaStatus.Check(Interop.CudaDriver.cuEventRecord(handle, stream.Handle));

    /// <summary>Milliseconds between two recorded events, after waiting for <paramref name="end"/>.</summary>
    public static float ElapsedMilliseconds(CudaEvent start, CudaEvent end)
    {
        CudaStatus.Check(Interop.CudaDriver.cuEventSynchronize(end.handle));
        CudaStatus.Check(Interop.CudaDriver.cuEventElapsedTime(out float ms, start.handle, end.handle));
        return ms;
    }
}
