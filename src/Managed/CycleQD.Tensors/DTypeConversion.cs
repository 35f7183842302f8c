using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace CycleQD.Tensors;

/// <summary>
/// Conversions between the weight storage types (F32, F16, BF16) and float32.
/// bfloat16 is the upper half of a float32; narrowing rounds to nearest, ties to even, and keeps
/// NaN a quiet NaN (a NaN must never round into infinity).
/// </summary>
public static class DTypeConversion
{
    /// <summary>Widens one bfloat16 (raw bits) to float32; exact.</summary>
    public static float BF16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Narrows float32 to bfloat16 bits, round-to-nearest-even; NaN stays NaN.</summary>
    public static ushort SingleToBF16(float value)
    {
        uint u = BitConverter.SingleToUInt32Bits(value);
        if ((u & 0x7FFF_FFFFu) > 0x7F80_0000u)
            return (ushort)((u >> 16) | 0x0040u); // quiet NaN, sign kept
        uint rounding = 0x7FFFu + ((u >> 16) & 1u);
        return (ushort)((u + rounding) >> 16);
    }

    /// <summary>
    /// Decodes <paramref name="source"/> (raw little-endian bytes of <paramref name="dtype"/>) into
    /// <paramref name="destination"/>, whose length must be source.Length / sizeof(dtype).
    /// </summary>
    /// <exception cref="NotSupportedException">dtype is not F32, F16 or BF16.</exception>
    /// <exception cref="ArgumentException">lengths disagree.</exception>
    public static void ToSingle(ReadOnlySpan<byte> source, DType dtype, Span<float> destination)
    {
        CheckLengths(source.Length, dtype, destination.Length);
        switch (dtype)
        {
            case DType.F32:
                MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
                break;
            case DType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), destination);
                break;
            case DType.BF16:
                BF16ToSingle(MemoryMarshal.Cast<byte, ushort>(source), destination);
                break;
            default:
                throw new NotSupportedException($"dtype {DTypes.Name(dtype)} is not a weight type (F32, F16, BF16)");
        }
    }

    /// <summary>Encodes float32 values into <paramref name="destination"/> as <paramref name="dtype"/>.</summary>
    /// <exception cref="NotSupportedException">dtype is not F32, F16 or BF16.</exception>
    /// <exception cref="ArgumentException">lengths disagree.</exception>
    public static void FromSingle(ReadOnlySpan<float> source, DType dtype, Span<byte> destination)
    {
        CheckLengths(destination.Length, dtype, source.Length);
        switch (dtype)
        {
            case DType.F32:
                MemoryMarshal.Cast<float, byte>(source).CopyTo(destination);
                break;
            case DType.F16:
                TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<byte, Half>(destination));
                break;
            case DType.BF16:
                SingleToBF16(source, MemoryMarshal.Cast<byte, ushort>(destination));
                break;
            default:
                throw new NotSupportedException($"dtype {DTypes.Name(dtype)} is not a weight type (F32, F16, BF16)");
        }
    }

    /// <summary>Widens bfloat16 bits to float32, element-wise.</summary>
    public static void BF16ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination too short", nameof(destination));
        Span<uint> bits = MemoryMarshal.Cast<float, uint>(destination);
        for (int i = 0; i < source.Length; i++) bits[i] = (uint)source[i] << 16;
    }

    /// <summary>Narrows float32 to bfloat16 bits (round-to-nearest-even), element-wise.</summary>
    public static void SingleToBF16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination too short", nameof(destination));
        for (int i = 0; i < source.Length; i++) destination[i] = SingleToBF16(source[i]);
    }

    private static void CheckLengths(int byteLength, DType dtype, int elements)
    {
        if ((long)elements * DTypes.SizeOf(dtype) != byteLength)
            throw new ArgumentException($"{byteLength} bytes of {DTypes.Name(dtype)} do not hold {elements} elements");
    }
}
