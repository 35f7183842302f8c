using System.Runtime.InteropServices;

namespace CycleQD.Cuda;

/// <summary>
/// The native objects a <see cref="CudaContext"/> hands out, in the order a drain of
/// <see cref="DeferredReleaseQueue"/> releases them: library handles first (they may still refer to
/// a stream, and own device workspaces), then events and streams, modules, and memory last.
/// </summary>
internal enum NativeHandleKind
{
    /// <summary>cuBLAS handle (cublasDestroy).</summary>
    Cublas,
    /// <summary>cuSOLVER dense handle (cusolverDnDestroy).</summary>
    Cusolver,
    /// <summary>CUevent (cuEventDestroy).</summary>
    Event,
    /// <summary>CUstream (cuStreamDestroy).</summary>
    Stream,
    /// <summary>CUmodule (cuModuleUnload).</summary>
    Module,
    /// <summary>Device memory (cuMemFree).</summary>
    Memory,
}

/// <summary>Where a <see cref="CudaHandle"/> goes to be released (its <see cref="CudaContext"/>; tests stand in for it).</summary>
internal interface INativeHandleOwner
{
    /// <summary>Called from a finalizer: remembers the object for a later release on a thread that owns the context. Never calls the driver.</summary>
    void Defer(NativeHandleKind kind, ulong handle);

    /// <summary>Called by Dispose: releases the object now, on the calling thread; false when the library reported a failure.</summary>
    bool ReleaseNow(NativeHandleKind kind, ulong handle);
}

/// <summary>
/// A native CUDA object (stream, event, module, cuBLAS or cuSOLVER handle) owned by a context.
/// Dispose releases it at once on the calling thread; a handle that is only finalized is handed to
/// its owner's <see cref="DeferredReleaseQueue"/> and released later on a thread that owns the
/// context, as <see cref="DeviceBuffer{T}"/> does with memory: nothing calls the driver from the
/// finalizer thread.
/// </summary>
internal abstract class CudaHandle : SafeHandle
{
    private readonly INativeHandleOwner? _owner;
    private readonly NativeHandleKind _kind;
    private volatile bool _finalizing;

    /// <summary>A handle of <paramref name="kind"/> released through <paramref name="owner"/> (null: never released, e.g. the default stream).</summary>
    protected CudaHandle(INativeHandleOwner? owner, NativeHandleKind kind, bool ownsHandle = true) : base(0, ownsHandle && owner is not null)
    {
        _owner = owner;
        _kind = kind;
    }

    /// <inheritdoc/>
    public override bool IsInvalid => handle == 0;

    /// <summary>Takes ownership of the native handle just created.</summary>
    internal void Attach(nint value) => SetHandle(value);

    /// <inheritdoc/>
    /// <remarks>The finalizer arrives here with <paramref name="disposing"/> false; ReleaseHandle then only queues.</remarks>
    protected override void Dispose(bool disposing)
    {
        if (!disposing) _finalizing = true;
        base.Dispose(disposing);
    }

    /// <inheritdoc/>
    protected sealed override bool ReleaseHandle()
    {
        if (_finalizing)
        {
            _owner!.Defer(_kind, (ulong)handle);
            return true;
        }
        return _owner!.ReleaseNow(_kind, (ulong)handle);
    }
}
