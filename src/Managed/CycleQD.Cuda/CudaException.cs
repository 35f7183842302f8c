namespace CycleQD.Cuda;

/// <summary>A CUDA driver, cuBLAS or cuSOLVER call returned an error status.</summary>
/// <param name="library">"CUDA driver", "cuBLAS" or "cuSOLVER".</param>
/// <param name="call">The failing call as written in the source.</param>
/// <param name="status">The status name, e.g. "CUDA_ERROR_OUT_OF_MEMORY".</param>
/// <param name="message">The whole message (call, status and its description).</param>
public sealed class CudaException(string library, string call, string status, string message) : Exception(message)
{
    /// <summary>"CUDA driver", "cuBLAS" or "cuSOLVER".</summary>
    public string Library { get; } = library;
    /// <summary>The failing call as written in the source.</summary>
    public string Call { get; } = call;
    /// <summary>The status name.</summary>
    public string Status { get; } = status;
}

/// <summary>No usable CUDA driver or GPU on this machine; <see cref="Exception.Message"/> says why.</summary>
public sealed class CudaUnavailableException(string reason) : Exception("CUDA is unavailable: " + reason)
{
    /// <summary>Why CUDA cannot be used (no driver, no GPU, a missing library...).</summary>
    public string Reason { get; } = reason;
}

/// <summary>The device-memory plan does not fit the card; the message gives the numbers.</summary>
public sealed class DeviceMemoryException(string message) : Exception(message);
