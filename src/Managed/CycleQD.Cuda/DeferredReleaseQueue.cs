using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;

namespace CycleQD.Cuda;

/// <summary>
/// Native objects whose managed owner was finalized without Dispose. The finalizer thread only
/// enqueues (a driver call there may deadlock, and the context current on it is unknown); a thread
/// that owns the context drains the queue at its next context call.
/// </summary>
internal sealed class DeferredReleaseQueue
{
    private readonly ConcurrentQueue<(NativeHandleKind Kind, ulong Handle)> _queue = new();

    /// <summary>Objects waiting.</summary>
    public int Count => _queue.Count;

    /// <summary>Queues one object; safe from any thread, the finalizer's included.</summary>
    public void Enqueue(NativeHandleKind kind, ulong handle) => _queue.Enqueue((kind, handle));

    /// <summary>
    /// Releases every queued object through <paramref name="release"/> on the calling thread, in
    /// <see cref="NativeHandleKind"/> order and first-in first-out within a kind. A release that throws
    /// does not stop the others; the first such exception is rethrown once all were tried.
    /// </summary>
    /// <returns>How many objects were released (or tried).</returns>
    public int Drain(Action<NativeHandleKind, ulong> release)
    {
        if (_queue.IsEmpty) return 0;
        var items = new List<(NativeHandleKind Kind, ulong Handle)>();
        while (_queue.TryDequeue(out var item)) items.Add(item);
        ExceptionDispatchInfo? first = null;
        // OrderBy is stable: queue order is kept within a kind.
        foreach (var (kind, handle) in items.OrderBy(i => i.Kind))
        {
            try { release(kind, handle); }
            catch (Exception e) { first ??= ExceptionDispatchInfo.Capture(e); }
        }
        first?.Throw();
        return items.Count;
    }
}
