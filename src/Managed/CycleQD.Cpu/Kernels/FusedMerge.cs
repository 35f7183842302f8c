using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace CycleQD.Cpu.Kernels;

/// <summary>
/// One-pass merge of a chunk when base, parents and child share one storage type (F32 or BF16):
/// out = b + Σₚ cₚ (θₚ − b), element by element in float32 registers, each input read once and
/// the output written once, so the kernel runs near memory speed instead of making a pass per
/// operation over staging buffers. The result equals the staged kernel's bit for bit: same
/// operations (subtract, then fused multiply-add) in the same order.
/// </summary>
internal static unsafe class FusedMerge
{
    /// <summary>F32: <paramref name="count"/> elements; <paramref name="parents"/> holds each parent's float* for the same element range.</summary>
    public static void F32(float* b, nint[] parents, float[] coef, float* dst, int count)
    {
        int i = 0;
        int w = Vector<float>.Count;
        int np = parents.Length;
        for (; i <= count - w; i += w)
        {
            var vb = Vector.Load(b + i);
            var acc = vb;
            for (int p = 0; p < np; p++)
                acc = Vector.FusedMultiplyAdd(Vector.Load((float*)parents[p] + i) - vb, new Vector<float>(coef[p]), acc);
            acc.Store(dst + i);
        }
        for (; i < count; i++)
        {
            float vb = b[i], acc = vb;
            for (int p = 0; p < np; p++) acc = MathF.FusedMultiplyAdd(((float*)parents[p])[i] - vb, coef[p], acc);
            dst[i] = acc;
        }
    }

    /// <summary>BF16 (raw bits): <paramref name="count"/> elements; <paramref name="parents"/> holds each parent's ushort* for the same element range.</summary>
    /// <remarks>
    /// Reads the bf16 data as 32-bit words, each holding an even element (low half) and the next odd
    /// element (high half): the even one widens by a left shift, the odd one by masking off the low half,
    /// and the rounded results go back with a right shift and a mask, so no instruction crosses lanes
    /// (no widen/narrow permutes). Rounding is <see cref="Tensors.DTypeConversion.SingleToBF16(float)"/>'s
    /// to the bit: nearest even, a NaN kept a quiet NaN.
    /// </remarks>
    public static void BF16(ushort* b, nint[] parents, float[] coef, ushort* dst, int count)
    {
        int i = 0;
        int words = Vector<uint>.Count;
        int w = 2 * words;
        int np = parents.Length;
        var high = new Vector<uint>(0xFFFF_0000u);
        for (; i <= count - w; i += w)
        {
            var ub = Vector.Load((uint*)(b + i));
            var be = Vector.AsVectorSingle(ub << 16);
            var bo = Vector.AsVectorSingle(ub & high);
            var acce = be;
            var acco = bo;
            for (int p = 0; p < np; p++)
            {
                var up = Vector.Load((uint*)((ushort*)parents[p] + i));
                var c = new Vector<float>(coef[p]);
                acce = Vector.FusedMultiplyAdd(Vector.AsVectorSingle(up << 16) - be, c, acce);
                acco = Vector.FusedMultiplyAdd(Vector.AsVectorSingle(up & high) - bo, c, acco);
            }
            var even = RoundedHigh(Vector.AsVectorUInt32(acce)) >> 16;
            var odd = RoundedHigh(Vector.AsVectorUInt32(acco)) & high;
            (even | odd).Store((uint*)(dst + i));
        }
        for (; i < count; i++)
        {
            float vb = Tensors.DTypeConversion.BF16ToSingle(b[i]), acc = vb;
            for (int p = 0; p < np; p++) acc = MathF.FusedMultiplyAdd(Tensors.DTypeConversion.BF16ToSingle(((ushort*)parents[p])[i]) - vb, coef[p], acc);
            dst[i] = Tensors.DTypeConversion.SingleToBF16(acc);
        }
    }

    // The float32 bits u rounded to bf16 in their high half (the low half is left over and masked or shifted off by the caller):
    // nearest even, or for a NaN its top bits with the quiet bit set.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<uint> RoundedHigh(Vector<uint> u)
    {
        var isNaN = Vector.GreaterThan(u & new Vector<uint>(0x7FFF_FFFFu), new Vector<uint>(0x7F80_0000u));
        var rounded = u + new Vector<uint>(0x7FFFu) + ((u >> 16) & Vector<uint>.One);
        return Vector.ConditionalSelect(isNaN, u | new Vector<uint>(0x0040_0000u), rounded);
    }
}
