namespace CycleQD.Tensors;

/// <summary>
/// One tensor's entry in a safetensors header.
/// </summary>
/// <param name="Name">Tensor name, e.g. "model.layers.0.self_attn.q_proj.weight".</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Dimensions, outermost first (row-major); empty for a scalar.</param>
/// <param name="Begin">Byte offset of the first element, relative to the start of the data section.</param>
/// <param name="End">Byte offset one past the last element, relative to the data section.</param>
public sealed record TensorInfo(string Name, DType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Number of elements (1 for a scalar).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long d in Shape) n = checked(n * d);
            return n;
        }
    }

    /// <summary>Size of the tensor's data in bytes.</summary>
    public long ByteLength => End - Begin;

    /// <summary>Shape as text, e.g. "[4096, 14336]".</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";

    /// <summary>True when both tensors have the same shape.</summary>
    public bool SameShape(TensorInfo other) => Shape.AsSpan().SequenceEqual(other.Shape);
}
