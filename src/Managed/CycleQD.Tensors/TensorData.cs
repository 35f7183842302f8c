using System.Runtime.InteropServices;

namespace CycleQD.Tensors;

/// <summary>
/// A tensor to be written: its header entry and a callback that streams exactly
/// <see cref="ByteLength"/> bytes of little-endian data. The callback lets a writer stream a model
/// larger than memory, one tensor at a time.
/// </summary>
public sealed class TensorData
{
    /// <summary>Tensor name.</summary>
    public string Name { get; }

    /// <summary>Element type of the written data.</summary>
    public DType DType { get; }

    /// <summary>Dimensions, outermost first.</summary>
    public long[] Shape { get; }

    /// <summary>Bytes the callback must write: product(shape) × sizeof(dtype).</summary>
    public long ByteLength { get; }

    private readonly Action<Stream> _write;

    /// <summary>Describes a tensor whose bytes <paramref name="write"/> produces on demand.</summary>
    public TensorData(string name, DType dtype, long[] shape, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved", nameof(name));
        Name = name;
        DType = dtype;
        Shape = shape;
        long n = 1;
        foreach (long d in shape)
        {
            if (d < 0) throw new ArgumentException($"tensor '{name}': negative dimension in shape", nameof(shape));
            n = checked(n * d);
        }
        ByteLength = checked(n * DTypes.SizeOf(dtype));
        _write = write;
    }

    /// <summary>Streams the data into <paramref name="stream"/>.</summary>
    public void WriteTo(Stream stream) => _write(stream);

    /// <summary>A tensor from raw bytes already in <paramref name="dtype"/>'s encoding.</summary>
    public static TensorData FromBytes(string name, DType dtype, long[] shape, ReadOnlyMemory<byte> bytes)
    {
        var t = new TensorData(name, dtype, shape, s => s.Write(bytes.Span));
        if (t.ByteLength != bytes.Length)
            throw new ArgumentException($"tensor '{name}': {bytes.Length} bytes given, shape and dtype need {t.ByteLength}");
        return t;
    }

    /// <summary>A tensor from float32 values, encoded as <paramref name="dtype"/> (F32, F16 or BF16) when written.</summary>
    public static TensorData FromSingle(string name, DType dtype, long[] shape, ReadOnlyMemory<float> values)
    {
        if (!DTypes.IsWeightType(dtype)) throw new ArgumentException($"tensor '{name}': {DTypes.Name(dtype)} is not a weight type");
        var t = new TensorData(name, dtype, shape, s =>
        {
            if (dtype == DType.F32) { s.Write(MemoryMarshal.AsBytes(values.Span)); return; }
            const int chunk = 1 << 16;
            var buffer = new byte[chunk * DTypes.SizeOf(dtype)];
            var src = values.Span;
            for (int i = 0; i < src.Length; i += chunk)
            {
                int n = Math.Min(chunk, src.Length - i);
                var dst = buffer.AsSpan(0, n * DTypes.SizeOf(dtype));
                DTypeConversion.FromSingle(src.Slice(i, n), dtype, dst);
                s.Write(dst);
            }
        });
        if (t.ByteLength != (long)values.Length * DTypes.SizeOf(dtype))
            throw new ArgumentException($"tensor '{name}': {values.Length} values given, shape {string.Join('x', shape)} needs {t.ByteLength / DTypes.SizeOf(dtype)}");
        return t;
    }
}
