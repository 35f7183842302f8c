using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CycleQD.Onnx.Graph;
using CycleQD.Tensors;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace CycleQD.Onnx.Runtime;

/// <summary>
/// One candidate's weights as ONNX Runtime tensors, ready to be bound to a
/// <see cref="LlamaSession"/> of the same architecture. float32 tensors are bound without a copy:
/// from the memory-mapped safetensors data (the <see cref="SafetensorsModel"/> must outlive this
/// object) or from pinned managed arrays; other storage types are converted to float32 once here.
/// </summary>
public sealed class LlamaWeights : IDisposable
{
    private readonly Dictionary<string, OrtValue> _values;
    private readonly List<GCHandle> _pins;

    /// <summary>Where the weights came from (a folder, a file or a description).</summary>
    public string Source { get; }

    private LlamaWeights(string source, Dictionary<string, OrtValue> values, List<GCHandle> pins)
    {
        Source = source;
        _values = values;
        _pins = pins;
    }

    internal OrtValue this[string name] => _values[name];

    /// <summary>Binds the weights of an opened safetensors model, checking every name and shape against <paramref name="config"/>.</summary>
    /// <exception cref="TensorFormatException">a weight is missing or has the wrong shape.</exception>
    public static unsafe LlamaWeights FromSafetensors(SafetensorsModel model, LlamaConfig config)
    {
        var values = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
        var pins = new List<GCHandle>();
        try
        {
            foreach (var spec in LlamaWeightLayout.For(config))
            {
                if (!model.Contains(spec.Name))
                    throw new TensorFormatException(model.Source, spec.Name, $"missing: a {config.ModelType} model with this config.json needs it (shape [{string.Join(", ", spec.Shape)}])");
                var info = model.GetInfo(spec.Name);
                if (!info.Shape.AsSpan().SequenceEqual(spec.Shape))
                    throw new TensorFormatException(model.FileOf(spec.Name).Path, spec.Name, $"shape {info.ShapeText} does not match config.json, which implies [{string.Join(", ", spec.Shape)}]");
                var bytes = model.GetBytes(spec.Name);
                if (info.DType == DType.F32 && ((nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(bytes)) & 3) == 0)
                {
                    // The span points into the file's memory map, which does not move.
                    nint p = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(bytes));
                    values[spec.Name] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float, spec.Shape, p, bytes.Length);
                }
                else
                {
                    values[spec.Name] = OrtValue.CreateTensorValueFromMemory(model.ReadSingle(spec.Name), spec.Shape);
                }
            }
            return new LlamaWeights(model.Source, values, pins);
        }
        catch
        {
            foreach (var v in values.Values) v.Dispose();
            throw;
        }
    }

    /// <summary>Binds float32 arrays (row-major, shapes as <see cref="LlamaWeightLayout"/>); the arrays are pinned, not copied, until disposal.</summary>
    /// <exception cref="TensorFormatException">a weight is missing or has the wrong element count.</exception>
    public static LlamaWeights FromArrays(LlamaConfig config, IReadOnlyDictionary<string, float[]> tensors, string source)
    {
        var values = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
        var pins = new List<GCHandle>();
        try
        {
            foreach (var spec in LlamaWeightLayout.For(config))
            {
                if (!tensors.TryGetValue(spec.Name, out var data))
                    throw new TensorFormatException(source, spec.Name, "missing");
                long n = spec.Shape.Aggregate(1L, (a, b) => a * b);
                if (data.Length != n)
                    throw new TensorFormatException(source, spec.Name, $"{data.Length} values, shape [{string.Join(", ", spec.Shape)}] needs {n}");
                values[spec.Name] = OrtValue.CreateTensorValueFromMemory(data, spec.Shape);
            }
            return new LlamaWeights(source, values, pins);
        }
        catch
        {
            foreach (var v in values.Values) v.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var v in _values.Values) v.Dispose();
        foreach (var p in _pins) p.Free();
        _values.Clear();
        _pins.Clear();
    }
}
