using System.Numerics;
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
    public static void BF16(ushort* b, nint[] parents, float[] coef, ushort* dst, int count)
    {
        int i = 0;
        int w = Vector<ushort>.Count;
        int np = parents.Length;
        var absMask = new Vector<uint>(0x7FFF_FFFFu);
        var inf = new Vector<uint>(0x7F80_0000u);
        var bias = new Vector<uint>(0x7FFFu);
        var one = Vector<uint>.One;
        var quiet = new Vector<uint>(0x0040u);
        for (; i <= count - w; i += w)
        {
            Vector.Widen(Vector.Load(b + i), out Vector<uint> bl, out Vector<uint> bh);
            var vbl = Vector.AsVectorSingle(bl << 16);
            var vbh = Vector.AsVectorSingle(bh << 16);
            var accl = vbl;
            var acch = vbh;
            for (int p = 0; p < np; p++)
            {
                Vector.Widen(Vector.Load((ushort*)parents[p] + i), out Vector<uint> pl, out Vector<uint> ph);
                var c = new Vector<float>(coef[p]);
                accl = Vector.FusedMultiplyAdd(Vector.AsVectorSingle(pl << 16) - vbl, c, accl);
                acch = Vector.FusedMultiplyAdd(Vector.AsVectorSingle(ph << 16) - vbh, c, acch);
            }
            Vector.Narrow(Round(Vector.AsVectorUInt32(accl)), Round(Vector.AsVectorUInt32(acch))).Store(dst + i);
        }
        for (; i < count; i++)
        {
            float vb = Tensors.DTypeConversion.BF16ToSingle(b[i]), acc = vb;
            for (int p = 0; p < np; p++) acc = MathF.FusedMultiplyAdd(Tensors.DTypeConversion.BF16ToSingle(((ushort*)parents[p])[i]) - vb, coef[p], acc);
            dst[i] = Tensors.DTypeConversion.SingleToBF16(acc);
        }

        Vector<uint> Round(Vector<uint> u)
        {
            var isNaN = Vector.GreaterThan(u & absMask, inf);
            var rounded = (u + bias + ((u >> 16) & one)) >> 16;
            return Vector.ConditionalSelect(isNaN, (u >> 16) | quiet, rounded);
        }
    }
}
