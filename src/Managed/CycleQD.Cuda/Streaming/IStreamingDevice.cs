using CycleQD.Tensors;

namespace CycleQD.Cuda.Streaming;

/// <summary>
/// What <see cref="TensorStreamer"/> needs of a device: counted allocations, page-locked host staging,
/// host → device copies on a copy queue that runs beside the compute queue, per-slot fences between
/// the two queues and the host, and the element-wise kernels. Implemented by the CUDA backend
/// (<see cref="CudaStreamingDevice"/>: a copy stream, a compute stream and events) and, in the tests,
/// by a simulated device with a hard byte budget whose copies run only when a fence asks for them, so
/// a schedule that forgets a wait reads stale bytes and fails its comparison.
/// Addresses are device addresses (CUdeviceptr) or, for the simulated device, host addresses standing in for them.
/// </summary>
internal interface IStreamingDevice
{
    /// <summary>The accounting every allocation of <see cref="Allocate"/> goes through.</summary>
    DeviceMemoryLedger Memory { get; }

    /// <summary>Allocates <paramref name="bytes"/> of device memory for <paramref name="purpose"/>.</summary>
    /// <exception cref="DeviceMemoryException">the device (or the budget) cannot hold it.</exception>
    ulong Allocate(long bytes, string purpose);

    /// <summary>Frees memory from <see cref="Allocate"/>; the queues must have passed every use of it.</summary>
    void Free(ulong address);

    /// <summary>Allocates page-locked host memory that copies can read while the host goes on.</summary>
    nint AllocatePinned(long bytes);

    /// <summary>Frees memory from <see cref="AllocatePinned"/>.</summary>
    void FreePinned(nint address);

    /// <summary>Queues a copy of <paramref name="bytes"/> from pinned host memory to the device on the copy queue.</summary>
    void CopyToDeviceAsync(nint source, ulong destination, long bytes);

    /// <summary>Marks, on the copy queue, the end of the copies queued so far for staging slot <paramref name="slot"/>.</summary>
    void RecordCopied(int slot);

    /// <summary>Blocks the host until slot <paramref name="slot"/>'s copies have read their pinned source.</summary>
    void HostWaitCopied(int slot);

    /// <summary>Makes the compute queue wait, without blocking the host, for slot <paramref name="slot"/>'s copies.</summary>
    void ComputeWaitCopied(int slot);

    /// <summary>Marks, on the compute queue, the end of the kernels that read slot <paramref name="slot"/>'s device buffers.</summary>
    void RecordConsumed(int slot);

    /// <summary>Makes the copy queue wait for the kernels that last read slot <paramref name="slot"/>.</summary>
    void CopyWaitConsumed(int slot);

    /// <summary>
    /// child = base + Σ cᵢ(θᵢ − base) over <paramref name="n"/> elements of <paramref name="dtype"/>, with
    /// cᵢ = wᵢ / Σw from <paramref name="weights"/> exactly as the backend's own merge computes them.
    /// </summary>
    void Merge(DType dtype, ulong baseWeights, ReadOnlySpan<ulong> parents, ReadOnlySpan<float> weights, ulong child, long n);

    /// <summary>tau = theta − base in float32 over <paramref name="n"/> elements of <paramref name="dtype"/>.</summary>
    void TaskVector(DType dtype, ulong theta, ulong baseWeights, ulong tau, long n);

    /// <summary>theta = base + tau (float32 tau) over <paramref name="n"/> elements of <paramref name="dtype"/>.</summary>
    void ApplyTaskVector(DType dtype, ulong baseWeights, ulong tau, ulong theta, long n);

    /// <summary>Waits for everything queued on both queues.</summary>
    void Synchronize();
}

/// <summary>One input of a streamed kernel: tensor bytes in host memory (staged) or already on the device (read in place).</summary>
/// <param name="Host">Host address of the tensor's first byte, or 0.</param>
/// <param name="Device">Device address of the tensor's first byte, when <paramref name="Host"/> is 0.</param>
internal readonly record struct StreamOperand(nint Host, ulong Device)
{
    /// <summary>Bytes at a host address, copied through the staging buffers.</summary>
    public static StreamOperand InHost(nint address) => new(address, 0);

    /// <summary>Bytes already on the device.</summary>
    public static StreamOperand OnDevice(ulong address) => new(0, address);

    /// <summary>True when the bytes must be staged.</summary>
    public bool IsHost => Host != 0;
}
