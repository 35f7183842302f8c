using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Runtime;

/// <summary>Adds ONNX Runtime's CUDA provider to session options, after checking that its libraries load.</summary>
internal static class CudaProvider
{
    /// <summary>Shared libraries the provider loads (its NEEDED entries, plus cuDNN which it opens at run time).</summary>
    public static readonly IReadOnlyList<string> Libraries =
        ["libcuda.so.1", "libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libcudnn.so.9"];

    /// <summary>
    /// The provider's settings: the GPU, and an arena that grows by exactly what is asked. ONNX
    /// Runtime's default doubles each new region, which for an 8B model's KV cache and weights can
    /// reserve up to twice what is used and break the device-memory plan (docs/cuda.md).
    /// </summary>
    public static Dictionary<string, string> Settings(int cudaDevice) => new(StringComparer.Ordinal)
    {
        ["device_id"] = cudaDevice.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["arena_extend_strategy"] = "kSameAsRequested",
    };

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
            using var options = new OrtCUDAProviderOptions();
            options.UpdateOptions(Settings(cudaDevice));
            so.AppendExecutionProvider_CUDA(options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ExecutionProviderUnavailableException("--device cuda: ONNX Runtime's CUDA provider cannot be loaded: " + e.Message.Trim(), e);
        }
    }

    /// <summary>
    /// The run option that makes ONNX Runtime hand back, at the end of a run, every region of GPU
    /// <paramref name="cudaDevice"/>'s arena with nothing left in it. With regions grown by exactly what
    /// is asked, tensors whose sizes change from batch to batch (KV buffers, prefill activations, the
    /// plain graph's growing cache) would otherwise leave their old regions reserved and unused.
    /// </summary>
    public static (string Key, string Value) ArenaShrinkage(int cudaDevice) =>
        ("memory.enable_memory_arena_shrinkage", "gpu:" + cudaDevice.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>New run options for a session on <paramref name="device"/>: with <see cref="ArenaShrinkage"/> on CUDA when <paramref name="shrink"/>.</summary>
    public static RunOptions NewRunOptions(InferenceDevice device, int cudaDevice, bool shrink)
    {
        var options = new RunOptions();
        if (shrink && device == InferenceDevice.Cuda)
        {
            var (key, value) = ArenaShrinkage(cudaDevice);
            options.AddRunConfigEntry(key, value);
        }
        return options;
    }

    /// <summary>Where the CUDA provider of device <paramref name="cudaDevice"/> keeps tensors.</summary>
    public static OrtMemoryInfo DeviceMemory(int cudaDevice) => new("Cuda", OrtAllocatorType.DeviceAllocator, cudaDevice, OrtMemType.Default);
}
