using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace CycleQD.Cuda.Tests;

/// <summary>
/// The release rules of native handles, on the CPU with a recording owner in place of a context:
/// Dispose releases at once on the disposing thread; a finalized handle is only queued (the finalizer
/// thread never releases); the queue releases on the draining thread, library handles first and memory last.
/// </summary>
public class DeferredReleaseTests
{
    private sealed record Call(string How, NativeHandleKind Kind, ulong Handle, int Thread);

    /// <summary>Records every call; optionally forwards deferrals into a real queue, as the context does.</summary>
    private sealed class RecordingOwner(DeferredReleaseQueue? queue = null) : INativeHandleOwner
    {
        public ConcurrentQueue<Call> Calls { get; } = new();

        public void Defer(NativeHandleKind kind, ulong handle)
        {
            Calls.Enqueue(new Call("defer", kind, handle, Environment.CurrentManagedThreadId));
            queue?.Enqueue(kind, handle);
        }

        public bool ReleaseNow(NativeHandleKind kind, ulong handle)
        {
            Calls.Enqueue(new Call("now", kind, handle, Environment.CurrentManagedThreadId));
            return true;
        }
    }

    private sealed class TestHandle : CudaHandle
    {
        public TestHandle(INativeHandleOwner? owner, NativeHandleKind kind, nint value) : base(owner, kind)
        {
            if (value != 0) Attach(value);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Abandon(INativeHandleOwner owner, int count)
    {
        for (int i = 0; i < count; i++) _ = new TestHandle(owner, NativeHandleKind.Stream, 0x1000 + i);
    }

    private static void CollectFinalizers()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    [Fact]
    public void Dispose_ReleasesAtOnce_OnTheDisposingThread()
    {
        var owner = new RecordingOwner();
        var h = new TestHandle(owner, NativeHandleKind.Cublas, 0x42);
        h.Dispose();
        h.Dispose(); // a second Dispose releases nothing more
        var call = Assert.Single(owner.Calls);
        Assert.Equal(new Call("now", NativeHandleKind.Cublas, 0x42, Environment.CurrentManagedThreadId), call);
    }

    [Fact]
    public void Finalized_IsOnlyQueued_OnTheFinalizerThread()
    {
        var owner = new RecordingOwner();
        Abandon(owner, 5);
        CollectFinalizers();
        var calls = owner.Calls.ToArray();
        Assert.Equal(5, calls.Length);
        Assert.All(calls, c => Assert.Equal("defer", c.How));
        Assert.All(calls, c => Assert.NotEqual(Environment.CurrentManagedThreadId, c.Thread));
        Assert.Equal(Enumerable.Range(0x1000, 5).Select(i => (ulong)i), calls.Select(c => c.Handle).Order());
    }

    [Fact]
    public void UnownedOrEmptyHandles_AreNeverReleased()
    {
        var owner = new RecordingOwner();
        new TestHandle(owner, NativeHandleKind.Event, 0).Dispose(); // never created
        new TestHandle(null, NativeHandleKind.Stream, 0x7).Dispose(); // owns nothing, like the default stream
        Assert.Empty(owner.Calls);
    }

    [Fact]
    public void FinalizedHandle_IsReleasedByTheNextDrain_OnTheDrainingThread()
    {
        var queue = new DeferredReleaseQueue();
        var owner = new RecordingOwner(queue);
        Abandon(owner, 3);
        CollectFinalizers();
        Assert.Equal(3, queue.Count);
        var released = new List<(ulong, int)>();
        Assert.Equal(3, queue.Drain((_, h) => released.Add((h, Environment.CurrentManagedThreadId))));
        Assert.Equal(3, released.Count);
        Assert.All(released, r => Assert.Equal(Environment.CurrentManagedThreadId, r.Item2));
        Assert.Equal(0, queue.Count);
        Assert.Equal(0, queue.Drain((_, _) => throw new InvalidOperationException("nothing is left to release")));
    }

    [Fact]
    public void Drain_ReleasesLibraryHandlesFirstAndMemoryLast_FifoWithinAKind()
    {
        var queue = new DeferredReleaseQueue();
        var kinds = Enum.GetValues<NativeHandleKind>();
        // Four producers (as finalizers would be), each enqueueing every kind in reverse order with rising handles.
        Parallel.For(0, 4, p =>
        {
            for (int i = 0; i < 50; i++)
                foreach (var k in kinds.Reverse())
                    queue.Enqueue(k, ((ulong)(uint)p << 32) | (uint)i);
        });
        var order = new List<(NativeHandleKind Kind, ulong Handle)>();
        Assert.Equal(4 * 50 * kinds.Length, queue.Drain((k, h) => order.Add((k, h))));
        Assert.Equal(order.Select(o => o.Kind).Order(), order.Select(o => o.Kind));
        Assert.Equal([NativeHandleKind.Cublas, NativeHandleKind.Cusolver, NativeHandleKind.Event, NativeHandleKind.Stream, NativeHandleKind.Module, NativeHandleKind.Memory],
            order.Select(o => o.Kind).Distinct());
        foreach (var k in kinds)
            for (int p = 0; p < 4; p++)
            {
                var mine = order.Where(o => o.Kind == k && o.Handle >> 32 == (ulong)p).Select(o => o.Handle & 0xFFFFFFFF).ToArray();
                Assert.Equal(Enumerable.Range(0, 50).Select(i => (ulong)i), mine);
            }
    }

    [Fact]
    public void Drain_AFailingRelease_DoesNotStopTheOthers_AndIsRethrown()
    {
        var queue = new DeferredReleaseQueue();
        queue.Enqueue(NativeHandleKind.Stream, 1);
        queue.Enqueue(NativeHandleKind.Stream, 2);
        queue.Enqueue(NativeHandleKind.Memory, 3);
        var released = new List<ulong>();
        var e = Assert.Throws<InvalidOperationException>(() => queue.Drain((_, h) =>
        {
            released.Add(h);
            if (h == 1) throw new InvalidOperationException("cuStreamDestroy failed");
        }));
        Assert.Equal("cuStreamDestroy failed", e.Message);
        Assert.Equal([1UL, 2, 3], released);
        Assert.Equal(0, queue.Count);
    }
}
