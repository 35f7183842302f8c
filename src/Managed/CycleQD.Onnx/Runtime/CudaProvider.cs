using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Runtime;

/// <summary>Adds ONNX Runtime's CUDA provider to session options, after checking that its libraries load.</summary>
internal static class CudaProvider
{
    /// <summary>Shared libraries the provider loads (its NEEDED entries, plus cuDNN which it opens at run time).</summary>
    public static readonly IReadOnlyList<string> Libraries =
        ["libcuda.so.1", "libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libcudnn.so.9"];

    /// <exception cref="ExecutionProviderUnavailableException">a library is missing or the provider does not load; the message names what.</exception>
    public static void Append(SessionOptions so, int cudaDevice)
    {
        // Probe first: ONNX Runtime's own failure is a log line plus a generic "failed to load" error.
        var missing = Libraries.Where(lib =>
        {
            if (!System.Runtime.InteropServices.NativeLibrary.TryLoad(lib, out nint h)) return true;
            System.Runtime.InteropServices.NativeLibrary.Free(h);
            return false;
        }).ToList();
        if (missing.Count > 0)
            throw new ExecutionProviderUnavailableException(
                $"--device cuda: ONNX Runtime's CUDA provider cannot load: {string.Join(", ", missing)} not found " +
                "(it needs an NVIDIA driver (libcuda.so.1), the CUDA 13 runtime and cuBLAS, and cuDNN 9 on the library path)");
        try
        {
            so.AppendExecutionProvider_CUDA(cudaDevice);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ExecutionProviderUnavailableException("--device cuda: ONNX Runtime's CUDA provider cannot be loaded: " + e.Message.Trim(), e);
        }
    }
}
