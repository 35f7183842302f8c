using CycleQD.Cuda.Streaming;

namespace CycleQD.Cuda.Backend;

/// <summary>Where the CUDA backend keeps the weight sets it is given (<see cref="CudaComputeBackend.Upload"/>).</summary>
public enum WeightResidency
{
    /// <summary>Every uploaded set is copied to device memory (base, experts, parents): fastest, needs the most memory.</summary>
    Resident,

    /// <summary>
    /// Uploaded sets stay in host memory (a memory-mapped file stays mapped; other sources are copied
    /// to native host memory) and are streamed to the device tensor by tensor through pinned staging
    /// buffers whenever an operation reads them. Sets the backend creates (merge results, task
    /// vectors, the child) are device sets as in <see cref="Resident"/>.
    /// </summary>
    Streamed,
}

/// <summary>Settings of a <see cref="CudaComputeBackend"/>.</summary>
/// <param name="Residency">Where uploaded weight sets live.</param>
/// <param name="StagingChunkBytes">
/// Bytes of one staging buffer in <see cref="WeightResidency.Streamed"/> mode: tensors are streamed in
/// chunks of at most this many bytes, through 2 × (1 + parents) buffers on the device and as many pinned
/// on the host; a positive multiple of 4096.
/// </param>
/// <param name="WorkspaceLimitBytes">
/// Most device bytes one batch of the SVD mutation may use (0: no limit besides 90% of the free memory);
/// give the streaming plan's <see cref="Planning.StreamingMemoryPlan.PeakWorkspaceBytes"/> to keep the
/// evaluator's share free even before the evaluator has allocated it.
/// </param>
public sealed record CudaBackendOptions(
    WeightResidency Residency = WeightResidency.Resident,
    long StagingChunkBytes = TensorStreamer.DefaultChunkBytes,
    long WorkspaceLimitBytes = 0)
{
    /// <summary>Throws when a setting is out of range, naming it.</summary>
    /// <exception cref="ArgumentOutOfRangeException">a bad chunk size or a negative limit.</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(Residency))
            throw new ArgumentOutOfRangeException(nameof(Residency), Residency, "residency must be Resident or Streamed");
        if (StagingChunkBytes <= 0 || StagingChunkBytes % TensorStreamer.ChunkAlignment != 0)
            throw new ArgumentOutOfRangeException(nameof(StagingChunkBytes), StagingChunkBytes, $"StagingChunkBytes must be a positive multiple of {TensorStreamer.ChunkAlignment}");
        if (WorkspaceLimitBytes < 0)
            throw new ArgumentOutOfRangeException(nameof(WorkspaceLimitBytes), WorkspaceLimitBytes, "WorkspaceLimitBytes must be 0 (no limit) or positive");
    }
}
