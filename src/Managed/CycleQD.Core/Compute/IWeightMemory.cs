namespace CycleQD.Core.Compute;

/// <summary>Where a weight set's tensor bytes live.</summary>
public enum WeightMemoryKind
{
    /// <summary>Host memory of this process.</summary>
    Host,
    /// <summary>Device memory of a CUDA GPU, in the device's primary context.</summary>
    Cuda,
}

/// <summary>
/// A weight set whose tensors a consumer may read in place (an inference session bound to them)
/// instead of copying them out through <see cref="IComputeBackend.Download"/>. An address stays valid
/// until the set is disposed; its bytes change when the backend writes the set (a merge into it, a
/// mutation), so a consumer must not read while the backend writes.
/// </summary>
public interface IWeightMemory
{
    /// <summary>Host or which kind of device.</summary>
    WeightMemoryKind Kind { get; }

    /// <summary>The CUDA device ordinal for <see cref="WeightMemoryKind.Cuda"/>; 0 for host memory.</summary>
    int DeviceOrdinal { get; }

    /// <summary>Address of tensor <paramref name="index"/>'s storage bytes (its <see cref="TensorSpec.ByteLength"/> long, in its storage type).</summary>
    nint TensorAddress(int index);
}
