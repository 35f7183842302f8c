using System.Runtime.CompilerServices;
using CycleQD.Cuda.Blas;
using CycleQD.Cuda.Solver;

namespace CycleQD.Cuda.Tests;

/// <summary>
/// Native handles on a real context: disposed ones are released at once, finalized ones wait in the
/// context's queue (no driver call on the finalizer thread) until the next context call or Dispose,
/// and the context keeps working afterwards. Skipped, with the driver's reason, where there is no GPU.
/// </summary>
public sealed class GpuHandleReleaseTests : IDisposable
{
    private readonly CudaContext _ctx;

    public GpuHandleReleaseTests()
    {
        var status = CudaDeviceProbe.Probe();
        if (!status.Available) Assert.Skip("needs a GPU: " + status.Reason);
        if (PtxCatalog.List().Count == 0) Assert.Skip("no PTX embedded in this build (no nvcc at build time)");
        _ctx = CudaContext.Create();
    }

    public void Dispose() => _ctx?.Dispose();

    /// <summary>Creates one of each object and drops them; returns how many were created (cuBLAS/cuSOLVER only where installed).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int Abandon(CudaContext ctx)
    {
        var stream = CudaStream.Create(ctx);
        _ = CudaEvent.Create(ctx);
        _ = ctx.Allocate<float>(1024);
        int created = 3;
        try
        {
            _ = CublasHandle.Create(ctx, stream);
            created++;
            _ = CusolverHandle.Create(ctx, stream); // its SolverHandle is the native object
            created++;
        }
        catch (CudaUnavailableException)
        {
            // A driver-only machine: the driver objects are still checked.
        }
        return created;
    }

    private static void CollectFinalizers()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    private void ContextStillWorks()
    {
        using var stream = CudaStream.Create(_ctx);
        using var buffer = _ctx.Allocate<float>(4096);
        buffer.FillBytes(0, stream);
        stream.Synchronize();
        Assert.All(buffer.ToArray(), x => Assert.Equal(0f, x));
    }

    [Fact]
    public void FinalizedHandles_WaitInTheQueue_ThenAreReleasedAtTheNextContextCall()
    {
        _ctx.Synchronize();
        int created = Abandon(_ctx);
        CollectFinalizers();
        Assert.Equal(created, _ctx.PendingReleases);
        _ctx.MakeCurrent();
        Assert.Equal(0, _ctx.PendingReleases);
        ContextStillWorks();
    }

    [Fact]
    public void DisposedHandles_AreReleasedAtOnce()
    {
        _ctx.Synchronize();
        var stream = CudaStream.Create(_ctx);
        var ev = CudaEvent.Create(_ctx);
        ev.Record(stream);
        stream.Synchronize();
        ev.Dispose();
        stream.Dispose();
        Assert.True(stream.IsClosed);
        Assert.Equal(0, _ctx.PendingReleases);
        ContextStillWorks();
    }

    [Fact]
    public void FinalizedHandles_AreReleasedByContextDispose()
    {
        var ctx = CudaContext.Create();
        Abandon(ctx);
        CollectFinalizers();
        Assert.True(ctx.PendingReleases > 0);
        ctx.Dispose();
        Assert.Equal(0, ctx.PendingReleases);
    }
}
