using CycleQD.Onnx.Graph;
using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Runtime;

/// <summary>
/// Puts tensors into the memory of one execution provider's device with small ONNX Runtime sessions
/// on that provider: copies (Identity), zero-filled buffers (Expand of a zero scalar) and the rows of
/// batched tensors (Gather on the first axis). Every result is a new tensor in <see cref="Memory"/>,
/// owned by the caller. On the CPU provider the same graphs run and the results are host tensors, so
/// the CPU is this class's twin. One session per graph shape, built on first use; calls are serialized.
/// </summary>
internal sealed class DevicePlacement : IDisposable
{
    private readonly InferenceDevice _device;
    private readonly int _cudaDevice;
    private readonly Dictionary<string, InferenceSession> _sessions = new(StringComparer.Ordinal);
    private readonly object _lock = new();

    /// <summary>Where results live: the GPU's memory on CUDA, host memory on the CPU.</summary>
    public OrtMemoryInfo Memory { get; }

    /// <summary>Placement on <paramref name="device"/> (GPU <paramref name="cudaDevice"/> for CUDA).</summary>
    public DevicePlacement(InferenceDevice device, int cudaDevice = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cudaDevice);
        _device = device;
        _cudaDevice = cudaDevice;
        Memory = device == InferenceDevice.Cuda ? CudaProvider.DeviceMemory(cudaDevice) : OrtMemoryInfo.DefaultInstance;
    }

    /// <summary>A copy of <paramref name="source"/> (rank <paramref name="rank"/>, element type <paramref name="type"/>, any memory) in <see cref="Memory"/>.</summary>
    /// <exception cref="ExecutionProviderUnavailableException">CUDA's provider cannot load.</exception>
    public OrtValue Copy(OrtValue source, OnnxElementType type, int rank)
    {
        ArgumentNullException.ThrowIfNull(source);
        var dims = Enumerable.Range(0, rank).Select(i => (OnnxDim)$"d{i}").ToArray();
        return Run($"copy:{type}:{rank}", () =>
        {
            var g = new OnnxGraph("copy", LlamaGraphBuilder.Opset);
            g.Input("x", type, dims);
            g.Output("x", "y", type, dims);
            return g;
        }, [("x", source)], ["y"])[0];
    }

    /// <summary><paramref name="count"/> new zero-filled tensors of <paramref name="shape"/> in <see cref="Memory"/>.</summary>
    /// <exception cref="ExecutionProviderUnavailableException">CUDA's provider cannot load.</exception>
    public OrtValue[] Zeros(OnnxElementType type, long[] shape, int count)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        int rank = shape.Length;
        var outputs = Enumerable.Range(0, count).Select(i => $"z{i}").ToArray();
        using var shapeValue = OrtValue.CreateTensorValueFromMemory(shape.ToArray(), [rank]);
        return Run($"zeros:{type}:{rank}:{count}", () =>
        {
            var g = new OnnxGraph("zeros", LlamaGraphBuilder.Opset);
            g.Input("shape", OnnxElementType.Int64, rank);
            string zero = g.ConstScalar(0, type);
            var dims = Enumerable.Range(0, rank).Select(i => (OnnxDim)$"d{i}").ToArray();
            foreach (string o in outputs)
            {
                g.Node("Expand", [zero, "shape"], [o]);
                g.Output(o, o, type, dims);
            }
            return g;
        }, [("shape", shapeValue)], outputs);
    }

    /// <summary>
    /// New tensors holding, in order, the first-axis entries <paramref name="rows"/> of each of
    /// <paramref name="tensors"/> (all rank <paramref name="rank"/> and type <paramref name="type"/>;
    /// not disposed here).
    /// </summary>
    /// <exception cref="ArgumentException">no rows.</exception>
    public OrtValue[] GatherRows(IReadOnlyList<OrtValue> tensors, OnnxElementType type, int rank, IReadOnlyList<int> rows)
    {
        if (rows.Count == 0) throw new ArgumentException("no rows selected", nameof(rows));
        int n = tensors.Count;
        using var index = OrtValue.CreateTensorValueFromMemory(rows.Select(r => (long)r).ToArray(), [rows.Count]);
        var inputs = new List<(string, OrtValue)>(n + 1) { ("rows", index) };
        for (int i = 0; i < n; i++) inputs.Add(($"t{i}", tensors[i]));
        var outputs = Enumerable.Range(0, n).Select(i => $"t{i}_out").ToArray();
        return Run($"rows:{type}:{rank}:{n}", () =>
        {
            var g = new OnnxGraph("gather_rows", LlamaGraphBuilder.Opset);
            g.Input("rows", OnnxElementType.Int64, "n");
            var dims = Enumerable.Range(0, rank).Select(i => (OnnxDim)$"d{i}").ToArray();
            var outDims = dims.ToArray();
            outDims[0] = "n";
            for (int i = 0; i < n; i++)
            {
                g.Input($"t{i}", type, dims);
                g.Node("Gather", [$"t{i}", "rows"], [outputs[i]], ("axis", 0L));
                g.Output(outputs[i], outputs[i], type, outDims);
            }
            return g;
        }, inputs, outputs);
    }

    private OrtValue[] Run(string key, Func<OnnxGraph> build, IReadOnlyList<(string Name, OrtValue Value)> inputs, string[] outputs)
    {
        lock (_lock)
        {
            if (!_sessions.TryGetValue(key, out var session))
            {
                using var so = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
                if (_device == InferenceDevice.Cuda) CudaProvider.Append(so, _cudaDevice);
                session = new InferenceSession(build().ToModelBytes(), so);
                _sessions[key] = session;
            }
            using var binding = session.CreateIoBinding();
            foreach (var (name, value) in inputs) binding.BindInput(name, value);
            foreach (string o in outputs) binding.BindOutputToDevice(o, Memory);
            // Each run hands back the arena's empty regions (the buffers of an earlier batch, disposed by
            // now, or this run's transfer buffers), so buffers of changing sizes do not pile up on the GPU.
            using var runOptions = CudaProvider.NewRunOptions(_device, _cudaDevice, shrink: true);
            session.RunWithBinding(runOptions, binding);
            // The outputs move to the caller, who owns them.
            return binding.GetOutputValues().ToArray();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var s in _sessions.Values) s.Dispose();
            _sessions.Clear();
            // The host's memory info is ONNX Runtime's shared instance; the device's was made here.
            if (_device == InferenceDevice.Cuda) Memory.Dispose();
        }
    }
}
