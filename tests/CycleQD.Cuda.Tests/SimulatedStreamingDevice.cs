using System.Runtime.InteropServices;
using CycleQD.Core.Compute;
using CycleQD.Cpu;
using CycleQD.Cuda.Streaming;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Tests;

/// <summary>
/// An <see cref="IStreamingDevice"/> in host memory with a hard byte budget: every device allocation
/// goes through a <see cref="DeviceMemoryLedger"/> that throws past the budget. Copies are queued and run
/// only when a fence of their slot is waited on (or at <see cref="Synchronize"/>), as a real copy queue
/// may lag behind the host, so a schedule that overwrites pinned bytes before their copy ran, or runs a
/// kernel before its copies, computes from stale bytes. Kernels check that every address they get lies in
/// a live device allocation and compute with the CPU backend itself.
/// </summary>
internal sealed unsafe class SimulatedStreamingDevice : IStreamingDevice, IDisposable
{
    private readonly Dictionary<ulong, long> _device = [];
    private readonly Dictionary<nint, long> _pinned = [];
    private readonly List<(nint Source, ulong Destination, long Bytes)> _copies = [];
    private readonly int[] _copiedMark = new int[2];
    private readonly CpuComputeBackend _cpu = new();
    private int _executed;

    public SimulatedStreamingDevice(long budgetBytes) => Memory = new DeviceMemoryLedger(budgetBytes);

    public DeviceMemoryLedger Memory { get; }

    /// <summary>Pinned host allocations made so far.</summary>
    public int PinnedAllocations { get; private set; }

    /// <summary>Host → device copies run so far.</summary>
    public int CopiesRun { get; private set; }

    public ulong Allocate(long bytes, string purpose)
    {
        Memory.Add(bytes, purpose);
        ulong p = (ulong)NativeMemory.AlignedAlloc((nuint)Math.Max(1, bytes), 64);
        _device.Add(p, bytes);
        return p;
    }

    public void Free(ulong address)
    {
        if (!_device.Remove(address, out long bytes)) throw new InvalidOperationException($"freeing 0x{address:x}, which is not a live device allocation");
        Memory.Remove(bytes);
        NativeMemory.AlignedFree((void*)address);
    }

    public nint AllocatePinned(long bytes)
    {
        nint p = (nint)NativeMemory.AlignedAlloc((nuint)Math.Max(1, bytes), 64);
        _pinned.Add(p, bytes);
        PinnedAllocations++;
        return p;
    }

    public void FreePinned(nint address)
    {
        if (!_pinned.Remove(address)) throw new InvalidOperationException($"freeing 0x{address:x}, which is not a live pinned allocation");
        NativeMemory.AlignedFree((void*)address);
    }

    public void CopyToDeviceAsync(nint source, ulong destination, long bytes)
    {
        if (!_pinned.Any(p => source >= p.Key && source + (nint)bytes <= p.Key + (nint)p.Value))
            throw new InvalidOperationException("a host → device copy from memory that is not pinned");
        RequireDevice(destination, bytes);
        _copies.Add((source, destination, bytes));
    }

    public void RecordCopied(int slot) => _copiedMark[slot] = _copies.Count;

    public void HostWaitCopied(int slot) => RunCopies(_copiedMark[slot]);

    public void ComputeWaitCopied(int slot) => RunCopies(_copiedMark[slot]);

    // Kernels run when they are queued, so a slot is consumed as soon as its kernel is queued.
    public void RecordConsumed(int slot) { }

    public void CopyWaitConsumed(int slot) { }

    public void Merge(DType dtype, ulong baseWeights, ReadOnlySpan<ulong> parents, ReadOnlySpan<float> weights, ulong child, long n)
    {
        long bytes = n * DTypes.SizeOf(dtype);
        using var b = _cpu.Upload(Source(dtype, n, baseWeights));
        var ps = new IWeightSet[parents.Length];
        for (int p = 0; p < parents.Length; p++) ps[p] = _cpu.Upload(Source(dtype, n, parents[p]));
        try
        {
            RequireDevice(child, bytes);
            using var c = _cpu.Merge(b, ps, weights);
            _cpu.Download(c, 0, new Span<byte>((void*)child, checked((int)bytes)));
        }
        finally
        {
            foreach (var p in ps) p.Dispose();
        }
    }

    public void TaskVector(DType dtype, ulong theta, ulong baseWeights, ulong tau, long n)
    {
        using var t = _cpu.Upload(Source(dtype, n, theta));
        using var b = _cpu.Upload(Source(dtype, n, baseWeights));
        RequireDevice(tau, n * sizeof(float));
        using var tv = _cpu.TaskVector(t, b);
        _cpu.Download(tv, 0, new Span<byte>((void*)tau, checked((int)(n * sizeof(float)))));
    }

    public void ApplyTaskVector(DType dtype, ulong baseWeights, ulong tau, ulong theta, long n)
    {
        int size = DTypes.SizeOf(dtype);
        RequireDevice(baseWeights, n * size);
        RequireDevice(tau, n * sizeof(float));
        RequireDevice(theta, n * size);
        var b = new float[n];
        DTypeConversion.ToSingle(new ReadOnlySpan<byte>((void*)baseWeights, checked((int)(n * size))), dtype, b);
        var t = new ReadOnlySpan<float>((void*)tau, checked((int)n));
        for (long i = 0; i < n; i++) b[i] += t[(int)i];
        DTypeConversion.FromSingle(b, dtype, new Span<byte>((void*)theta, checked((int)(n * size))));
    }

    public void Synchronize() => RunCopies(_copies.Count);

    private InMemoryTensorSource Source(DType dtype, long n, ulong address)
    {
        long bytes = n * DTypes.SizeOf(dtype);
        RequireDevice(address, bytes);
        return new InMemoryTensorSource().Add(new TensorSpec("chunk", dtype, [n]), new ReadOnlySpan<byte>((void*)address, checked((int)bytes)).ToArray());
    }

    private void RunCopies(int upTo)
    {
        for (; _executed < upTo; _executed++)
        {
            var (s, d, n) = _copies[_executed];
            Buffer.MemoryCopy((void*)s, (void*)d, n, n);
            CopiesRun++;
        }
    }

    private void RequireDevice(ulong address, long bytes)
    {
        foreach (var (p, n) in _device)
            if (address >= p && address + (ulong)bytes <= p + (ulong)n) return;
        throw new InvalidOperationException($"a kernel or copy touches {bytes} bytes at 0x{address:x}, outside every live device allocation");
    }

    public void Dispose()
    {
        foreach (var p in _device.Keys) NativeMemory.AlignedFree((void*)p);
        foreach (var p in _pinned.Keys) NativeMemory.AlignedFree((void*)p);
        _device.Clear();
        _pinned.Clear();
        _cpu.Dispose();
    }
}
