using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx;

/// <summary>Version and execution providers of the ONNX Runtime this build carries.</summary>
/// <param name="Version">Runtime version, e.g. "1.31.0".</param>
/// <param name="Providers">Providers compiled into the runtime (not all may load: CUDA needs its libraries).</param>
public sealed record OnnxRuntimeStatus(string Version, IReadOnlyList<string> Providers);

/// <summary>Queries ONNX Runtime.</summary>
public static class OnnxRuntimeInfo
{
    /// <summary>Initialises the runtime environment and reports its version and providers.</summary>
    public static OnnxRuntimeStatus Query()
    {
        var env = OrtEnv.Instance();
        return new OnnxRuntimeStatus(env.GetVersionString(), env.GetAvailableProviders());
    }
}
