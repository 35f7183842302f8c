namespace CycleQD.Onnx.Runtime;

/// <summary>Execution provider of a session.</summary>
public enum InferenceDevice
{
    /// <summary>ONNX Runtime's CPU provider.</summary>
    Cpu,
    /// <summary>ONNX Runtime's CUDA provider (needs CUDA 13 and cuDNN 9 libraries).</summary>
    Cuda,
}

/// <summary>The CUDA provider could not be loaded; the message names what is missing.</summary>
public sealed class ExecutionProviderUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
