using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using CycleQD.Tensors;

namespace CycleQD.Cpu.Kernels;

/// <summary>
/// SIMD conversions between storage types and float32 for the CPU kernels. bfloat16 narrowing
/// rounds to nearest even and keeps NaN a quiet NaN, bit-identical to <see cref="DTypeConversion.SingleToBF16(float)"/>.
/// </summary>
internal static class StorageConversion
{
    /// <summary>Decodes <paramref name="destination"/>.Length elements of <paramref name="dtype"/> from <paramref name="source"/>.</summary>
    public static void Load(ReadOnlySpan<byte> source, DType dtype, Span<float> destination)
    {
        switch (dtype)
        {
            case DType.F32: MemoryMarshal.Cast<byte, float>(source)[..destination.Length].CopyTo(destination); break;
            case DType.F16: TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source)[..destination.Length], destination); break;
            case DType.BF16: WidenBF16(MemoryMarshal.Cast<byte, ushort>(source)[..destination.Length], destination); break;
            default: throw new NotSupportedException($"dtype {DTypes.Name(dtype)} is not a weight type (F32, F16, BF16)");
        }
    }

    /// <summary>Encodes <paramref name="source"/> as <paramref name="dtype"/> into <paramref name="destination"/>.</summary>
    public static void Store(ReadOnlySpan<float> source, DType dtype, Span<byte> destination)
    {
        switch (dtype)
        {
            case DType.F32: MemoryMarshal.Cast<float, byte>(source).CopyTo(destination); break;
            case DType.F16: TensorPrimitives.ConvertToHalf(source, MemoryMarshal.Cast<byte, Half>(destination)[..source.Length]); break;
            case DType.BF16: NarrowBF16(source, MemoryMarshal.Cast<byte, ushort>(destination)[..source.Length]); break;
            default: throw new NotSupportedException($"dtype {DTypes.Name(dtype)} is not a weight type (F32, F16, BF16)");
        }
    }

    public static void WidenBF16(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        Span<uint> bits = MemoryMarshal.Cast<float, uint>(destination);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int w = Vector<ushort>.Count;
            var src = MemoryMarshal.Cast<ushort, Vector<ushort>>(source);
            var dst = MemoryMarshal.Cast<uint, Vector<uint>>(bits);
            for (int v = 0; v < src.Length; v++)
            {
                Vector.Widen(src[v], out Vector<uint> lo, out Vector<uint> hi);
                dst[2 * v] = lo << 16;
                dst[2 * v + 1] = hi << 16;
            }
            i = src.Length * w;
        }
        for (; i < source.Length; i++) bits[i] = (uint)source[i] << 16;
    }

    public static void NarrowBF16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        ReadOnlySpan<uint> bits = MemoryMarshal.Cast<float, uint>(source);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var src = MemoryMarshal.Cast<uint, Vector<uint>>(bits);
            var dst = MemoryMarshal.Cast<ushort, Vector<ushort>>(destination);
            int pairs = Math.Min(src.Length / 2, dst.Length);
            var absMask = new Vector<uint>(0x7FFF_FFFFu);
            var inf = new Vector<uint>(0x7F80_0000u);
            var bias = new Vector<uint>(0x7FFFu);
            var one = Vector<uint>.One;
            var quiet = new Vector<uint>(0x0040u);
            for (int v = 0; v < pairs; v++)
            {
                dst[v] = Vector.Narrow(Round(src[2 * v]), Round(src[2 * v + 1]));
            }
            i = pairs * Vector<ushort>.Count;

            Vector<uint> Round(Vector<uint> u)
            {
                var isNaN = Vector.GreaterThan(u & absMask, inf);
                var rounded = (u + bias + ((u >> 16) & one)) >> 16;
                var nan = (u >> 16) | quiet;
                return Vector.ConditionalSelect(isNaN, nan, rounded);
            }
        }
        for (; i < source.Length; i++) destination[i] = DTypeConversion.SingleToBF16(source[i]);
    }
}
