using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CycleQD.Onnx.Graph;
using CycleQD.Tensors;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace CycleQD.Onnx.Runtime;

/// <summary>
/// One candidate's weights as ONNX Runtime tensors, ready to be bound to a
/// <see cref="LlamaSession"/> of the same architecture and element type. Tensors already stored
/// in the graph's element type are bound without a copy: from the memory-mapped safetensors data
/// (the <see cref="SafetensorsModel"/> must outlive this object), from pinned managed arrays, or
/// from device memory the caller owns; other storage types are converted once here.
/// </summary>
public sealed class LlamaWeights : IDisposable
{
    private readonly Dictionary<string, OrtValue> _values;
    private readonly List<GCHandle> _pins;

    /// <summary>Where the weights came from (a folder, a file or a description).</summary>
    public string Source { get; }

    /// <summary>Element type of every tensor (must equal the session graph's).</summary>
    public OnnxElementType ElementType { get; }

    private LlamaWeights(string source, OnnxElementType type, Dictionary<string, OrtValue> values, List<GCHandle> pins)
    {
        Source = source;
        ElementType = type;
        _values = values;
        _pins = pins;
    }

    internal OrtValue this[string name] => _values[name];

    internal static TensorElementType OrtType(OnnxElementType t) => t switch
    {
        OnnxElementType.Float => TensorElementType.Float,
        OnnxElementType.Float16 => TensorElementType.Float16,
        OnnxElementType.BFloat16 => TensorElementType.BFloat16,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "not a weight type"),
    };

    private static DType StorageType(OnnxElementType t) => t switch
    {
        OnnxElementType.Float => DType.F32,
        OnnxElementType.Float16 => DType.F16,
        OnnxElementType.BFloat16 => DType.BF16,
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "not a weight type"),
    };

    /// <summary>Binds the weights of an opened safetensors model, checking every name and shape against <paramref name="config"/>.</summary>
    /// <param name="model">Opened weights; must outlive the returned object when tensors are bound in place.</param>
    /// <param name="config">The architecture.</param>
    /// <param name="elementType">The session graph's element type.</param>
    /// <exception cref="TensorFormatException">a weight is missing, has the wrong shape, or the file holds a tensor the graph does not use.</exception>
    public static LlamaWeights FromSafetensors(SafetensorsModel model, LlamaConfig config, OnnxElementType elementType = OnnxElementType.Float) =>
        FromSafetensors(model, LlamaWeightLayout.For(config), $"a {config.ModelType} model with this config.json", elementType,
            name => name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal),
            name => "is not part of the Llama graph (biases and other extra tensors are not supported); " +
                (config.TieWordEmbeddings && name == LlamaWeightLayout.LmHead ? "config.json says tie_word_embeddings, yet lm_head.weight is present" : "the model would run without it"));

    /// <summary>
    /// Binds the tensors of <paramref name="layout"/> from an opened safetensors model (any graph whose
    /// weights are named inputs), checking every name and shape.
    /// </summary>
    /// <param name="model">Opened weights; must outlive the returned object when tensors are bound in place.</param>
    /// <param name="layout">The tensors the graph(s) read, with their shapes.</param>
    /// <param name="needer">Who needs a missing tensor, for the error message (e.g. "a sam model with this config.json").</param>
    /// <param name="elementType">The session graph's element type.</param>
    /// <param name="ignorable">Names of tensors the file may hold that no graph reads; null for none.</param>
    /// <param name="extraProblem">Error text for any other tensor in the file; null to accept extra tensors silently.</param>
    /// <exception cref="TensorFormatException">a weight is missing, has the wrong shape or element type, or the file holds a tensor the graph does not use.</exception>
    public static unsafe LlamaWeights FromSafetensors(SafetensorsModel model, IReadOnlyList<LlamaWeightSpec> layout, string needer,
        OnnxElementType elementType, Func<string, bool>? ignorable, Func<string, string>? extraProblem)
    {
        var values = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
        var pins = new List<GCHandle>();
        var want = StorageType(elementType);
        int size = DTypes.SizeOf(want);
        try
        {
            foreach (var spec in layout)
            {
                if (!model.Contains(spec.Name))
                    throw new TensorFormatException(model.Source, spec.Name, $"missing: {needer} needs it (shape [{string.Join(", ", spec.Shape)}])");
                var info = model.GetInfo(spec.Name);
                if (!info.Shape.AsSpan().SequenceEqual(spec.Shape))
                    throw new TensorFormatException(model.FileOf(spec.Name).Path, spec.Name, $"shape {info.ShapeText} does not match config.json, which implies [{string.Join(", ", spec.Shape)}]");
                if (!DTypes.IsWeightType(info.DType))
                    throw new TensorFormatException(model.FileOf(spec.Name).Path, spec.Name, $"stored as {DTypes.Name(info.DType)}; weights must be F32, F16 or BF16");
                var bytes = model.GetBytes(spec.Name);
                nint p = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(bytes));
                if (info.DType == want && p % size == 0)
                {
                    // The span points into the file's memory map, which does not move.
                    values[spec.Name] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, OrtType(elementType), spec.Shape, p, bytes.Length);
                }
                else
                {
                    var floats = model.ReadSingle(spec.Name);
                    values[spec.Name] = FromFloats(floats, spec.Shape, elementType, pins);
                }
            }
            // A tensor the graph does not read means a feature it lacks (attention or MLP biases, say):
            // running without it would silently compute a different model.
            if (extraProblem is not null)
                foreach (var t in model.Tensors)
                    if (!values.ContainsKey(t.Name) && !(ignorable?.Invoke(t.Name) ?? false))
                        throw new TensorFormatException(model.FileOf(t.Name).Path, t.Name, extraProblem(t.Name));
            return new LlamaWeights(model.Source, elementType, values, pins);
        }
        catch
        {
            Release(values, pins);
            throw;
        }
    }

    /// <summary>
    /// Binds float32 arrays (row-major, shapes as <see cref="LlamaWeightLayout"/>). For a Float
    /// graph the arrays are pinned, not copied, until disposal, so writing into them changes the
    /// next run's weights; for half-precision graphs they are converted once.
    /// </summary>
    /// <exception cref="TensorFormatException">a weight is missing or has the wrong element count.</exception>
    public static LlamaWeights FromArrays(LlamaConfig config, IReadOnlyDictionary<string, float[]> tensors, string source, OnnxElementType elementType = OnnxElementType.Float) =>
        FromArrays(LlamaWeightLayout.For(config), tensors, source, elementType);

    /// <summary>As <see cref="FromArrays(LlamaConfig, IReadOnlyDictionary{string, float[]}, string, OnnxElementType)"/>, for the tensors of any weight layout.</summary>
    /// <exception cref="TensorFormatException">a weight is missing or has the wrong element count.</exception>
    public static LlamaWeights FromArrays(IReadOnlyList<LlamaWeightSpec> layout, IReadOnlyDictionary<string, float[]> tensors, string source, OnnxElementType elementType = OnnxElementType.Float)
    {
        var values = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
        var pins = new List<GCHandle>();
        try
        {
            foreach (var spec in layout)
            {
                if (!tensors.TryGetValue(spec.Name, out var data))
                    throw new TensorFormatException(source, spec.Name, "missing");
                long n = spec.Shape.Aggregate(1L, (a, b) => a * b);
                if (data.Length != n)
                    throw new TensorFormatException(source, spec.Name, $"{data.Length} values, shape [{string.Join(", ", spec.Shape)}] needs {n}");
                values[spec.Name] = FromFloats(data, spec.Shape, elementType, pins);
            }
            return new LlamaWeights(source, elementType, values, pins);
        }
        catch
        {
            Release(values, pins);
            throw;
        }
    }

    /// <summary>
    /// Binds tensors that already live in CUDA device memory (e.g. a merged candidate written by
    /// the CUDA kernels), without a copy. The caller owns the memory and keeps it alive and
    /// unchanged while runs use it. Only a session on the CUDA provider can run with these.
    /// </summary>
    /// <param name="config">The architecture.</param>
    /// <param name="tensors">Device pointer and byte length per weight name, each tensor in <paramref name="elementType"/>.</param>
    /// <param name="elementType">Element type of the device tensors (the graph's).</param>
    /// <param name="deviceId">CUDA device ordinal.</param>
    /// <param name="source">Names the weight set in errors.</param>
    /// <exception cref="TensorFormatException">a weight is missing or its byte length does not match its shape.</exception>
    public static LlamaWeights FromCudaMemory(LlamaConfig config, IReadOnlyDictionary<string, (nint Pointer, long Bytes)> tensors, OnnxElementType elementType, int deviceId, string source) =>
        FromMemory(LlamaWeightLayout.For(config), tensors, elementType, new OrtMemoryInfo("Cuda", OrtAllocatorType.DeviceAllocator, deviceId, OrtMemType.Default), source);

    /// <summary>As <see cref="FromCudaMemory(LlamaConfig, IReadOnlyDictionary{string, ValueTuple{nint, long}}, OnnxElementType, int, string)"/> for the weights of <paramref name="layout"/> (e.g. SAM's graphs).</summary>
    /// <exception cref="TensorFormatException">a weight is missing or its byte length does not match its shape.</exception>
    public static LlamaWeights FromCudaMemory(IReadOnlyList<LlamaWeightSpec> layout, IReadOnlyDictionary<string, (nint Pointer, long Bytes)> tensors, OnnxElementType elementType, int deviceId, string source) =>
        FromMemory(layout, tensors, elementType, new OrtMemoryInfo("Cuda", OrtAllocatorType.DeviceAllocator, deviceId, OrtMemType.Default), source);

    /// <summary>
    /// Binds tensors that live in host memory the caller owns (e.g. a CPU compute backend's weight
    /// set), without a copy: the CPU twin of <c>FromCudaMemory</c>. The caller keeps the
    /// memory alive and unchanged while runs use it.
    /// </summary>
    /// <param name="layout">The weights the graph reads.</param>
    /// <param name="tensors">Host address and byte length per weight name, each tensor in <paramref name="elementType"/>.</param>
    /// <param name="elementType">Element type of the tensors (the graph's).</param>
    /// <param name="source">Names the weight set in errors.</param>
    /// <exception cref="TensorFormatException">a weight is missing or its byte length does not match its shape.</exception>
    public static LlamaWeights FromHostMemory(IReadOnlyList<LlamaWeightSpec> layout, IReadOnlyDictionary<string, (nint Pointer, long Bytes)> tensors, OnnxElementType elementType, string source) =>
        FromMemory(layout, tensors, elementType, OrtMemoryInfo.DefaultInstance, source);

    private static LlamaWeights FromMemory(IReadOnlyList<LlamaWeightSpec> layout, IReadOnlyDictionary<string, (nint Pointer, long Bytes)> tensors, OnnxElementType elementType,
        OrtMemoryInfo memory, string source)
    {
        var values = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
        int size = DTypes.SizeOf(StorageType(elementType));
        try
        {
            foreach (var spec in layout)
            {
                if (!tensors.TryGetValue(spec.Name, out var t))
                    throw new TensorFormatException(source, spec.Name, "missing");
                long need = spec.Shape.Aggregate(1L, (a, b) => a * b) * size;
                if (t.Bytes != need || t.Pointer == 0)
                    throw new TensorFormatException(source, spec.Name, $"{t.Bytes} bytes at 0x{t.Pointer:x}; shape [{string.Join(", ", spec.Shape)}] in {elementType} needs {need}");
                values[spec.Name] = OrtValue.CreateTensorValueWithData(memory, OrtType(elementType), spec.Shape, t.Pointer, t.Bytes);
            }
            return new LlamaWeights(source, elementType, values, []);
        }
        catch
        {
            Release(values, []);
            throw;
        }
    }

    /// <summary>
    /// A copy of these weights in the memory of <paramref name="placement"/>'s device (on CUDA: the
    /// GPU's, so runs read them there instead of copying them from the host each time). The copy owns
    /// its tensors; this object is left as it was.
    /// </summary>
    /// <exception cref="ExecutionProviderUnavailableException">CUDA's provider cannot load.</exception>
    internal LlamaWeights CopyTo(DevicePlacement placement, IReadOnlyList<LlamaWeightSpec> layout)
    {
        var values = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
        try
        {
            // One tensor at a time: the device holds at most one tensor's transfer buffer beside the copies.
            foreach (var spec in layout) values[spec.Name] = placement.Copy(_values[spec.Name], ElementType, spec.Shape.Length);
            return new LlamaWeights(Source, ElementType, values, []);
        }
        catch
        {
            Release(values, []);
            throw;
        }
    }

    private static OrtValue FromFloats(float[] data, long[] shape, OnnxElementType type, List<GCHandle> pins)
    {
        if (type == OnnxElementType.Float) return OrtValue.CreateTensorValueFromMemory(data, shape);
        var bytes = new byte[data.Length * 2];
        DTypeConversion.FromSingle(data, StorageType(type), bytes);
        var pin = GCHandle.Alloc(bytes, GCHandleType.Pinned);
        pins.Add(pin);
        return OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, OrtType(type), shape, pin.AddrOfPinnedObject(), bytes.Length);
    }

    private static void Release(Dictionary<string, OrtValue> values, List<GCHandle> pins)
    {
        foreach (var v in values.Values) v.Dispose();
        foreach (var p in pins) p.Free();
        values.Clear();
        pins.Clear();
    }

    /// <inheritdoc />
    public void Dispose() => Release(_values, _pins);
}
