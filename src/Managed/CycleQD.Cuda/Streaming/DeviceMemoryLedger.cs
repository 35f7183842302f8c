using System.Globalization;

namespace CycleQD.Cuda.Streaming;

/// <summary>
/// The one place device allocations are counted: bytes in use, the high-water mark since the last
/// <see cref="ResetPeak"/>, and how many allocations were made. An optional budget turns an
/// allocation that would exceed it into a <see cref="DeviceMemoryException"/> before anything is
/// allocated (the simulated device of the tests runs under one; the CUDA context's ledger has none:
/// there the driver is the limit). Thread-safe: finalizer-queued frees may arrive from any thread's drain.
/// </summary>
internal sealed class DeviceMemoryLedger
{
    private readonly Lock _lock = new();
    private long _inUse;
    private long _peak;
    private long _allocations;

    /// <summary>A ledger that refuses to go above <paramref name="budgetBytes"/> (no limit by default).</summary>
    public DeviceMemoryLedger(long budgetBytes = long.MaxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(budgetBytes);
        BudgetBytes = budgetBytes;
    }

    /// <summary>Bytes the ledger never goes above.</summary>
    public long BudgetBytes { get; }

    /// <summary>Bytes allocated and not yet freed.</summary>
    public long InUseBytes { get { lock (_lock) return _inUse; } }

    /// <summary>The most bytes in use at once since creation or the last <see cref="ResetPeak"/>.</summary>
    public long PeakBytes { get { lock (_lock) return _peak; } }

    /// <summary>Allocations made since creation (frees do not lower it).</summary>
    public long Allocations { get { lock (_lock) return _allocations; } }

    /// <summary>Counts an allocation of <paramref name="bytes"/> for <paramref name="purpose"/>.</summary>
    /// <exception cref="DeviceMemoryException">it would exceed the budget; nothing is counted.</exception>
    public void Add(long bytes, string purpose)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        lock (_lock)
        {
            if (bytes > BudgetBytes - _inUse)
                throw new DeviceMemoryException(string.Create(CultureInfo.InvariantCulture,
                    $"device memory budget exceeded allocating {bytes} bytes for {purpose}: {_inUse} bytes in use of a budget of {BudgetBytes}"));
            _inUse += bytes;
            _allocations++;
            if (_inUse > _peak) _peak = _inUse;
        }
    }

    /// <summary>Counts a free of <paramref name="bytes"/> counted by <see cref="Add"/>.</summary>
    public void Remove(long bytes)
    {
        lock (_lock)
        {
            if (bytes < 0 || bytes > _inUse) throw new InvalidOperationException($"freeing {bytes} bytes with {_inUse} in use: the ledger lost track of an allocation");
            _inUse -= bytes;
        }
    }

    /// <summary>Starts a new high-water mark at the bytes in use now (e.g. at the start of a generation).</summary>
    public void ResetPeak()
    {
        lock (_lock) _peak = _inUse;
    }
}
