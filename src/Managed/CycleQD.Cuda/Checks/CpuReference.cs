using System.Runtime.InteropServices;
using CycleQD.Core.Random;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Checks;

/// <summary>
/// Float64 CPU references for the device check and the GPU tests: plain loops, written from the
/// formulas, independent of the kernels. Random numbers come from the engine's own
/// <see cref="Philox4x32"/> (the CPU backend's generator), which the kernels must reproduce bit for bit.
/// </summary>
internal static class CpuReference
{
    /// <summary>s·(1 + r) and r·s with r = wMax·u in float32 (as the kernel forms r), products in float64.</summary>
    public static (double[] S, double[] Delta) Rescale(ReadOnlySpan<float> s, ulong seed, uint stream, uint generation, float wMax)
    {
        var outS = new double[s.Length];
        var delta = new double[s.Length];
        for (int i = 0; i < s.Length; i++)
        {
            float r = wMax * Philox4x32.Uniform(seed, stream, generation, Streams.SvdScale, (ulong)i);
            outS[i] = s[i] * (1.0 + r);
            delta[i] = (double)r * s[i];
        }
        return (outS, delta);
    }

    /// <summary>‖got − ref‖ / ‖ref‖ over n elements, computed in parallel chunks (float64 sums).</summary>
    public static double RelativeError(long n, Func<long, double> reference, Func<long, double> got)
    {
        const long Chunk = 1 << 20;
        long chunks = (n + Chunk - 1) / Chunk;
        var num = new double[chunks];
        var den = new double[chunks];
        Parallel.For(0, chunks, c =>
        {
            double a = 0, b = 0;
            for (long i = c * Chunk, end = Math.Min(n, (c + 1) * Chunk); i < end; i++)
            {
                double r = reference(i), d = got(i) - r;
                a += d * d;
                b += r * r;
            }
            num[c] = a;
            den[c] = b;
        });
        double sn = num.Sum(), sd = den.Sum();
        if (double.IsNaN(sn)) return double.NaN;
        return sd == 0 ? Math.Sqrt(sn) : Math.Sqrt(sn / sd);
    }

    /// <summary>Fills bfloat16 bits with values uniform in [lo, hi) (xorshift64*, deterministic per seed).</summary>
    public static void FillBF16(Span<ushort> dst, ulong seed, float lo, float hi)
    {
        ulong s = seed * 2685821657736338717ul + 1;
        for (int i = 0; i < dst.Length; i++)
            dst[i] = DTypeConversion.SingleToBF16(lo + (hi - lo) * Next(ref s));
    }

    /// <summary>Fills float32 values uniform in [lo, hi).</summary>
    public static void Fill(Span<float> dst, ulong seed, float lo, float hi)
    {
        ulong s = seed * 2685821657736338717ul + 1;
        for (int i = 0; i < dst.Length; i++) dst[i] = lo + (hi - lo) * Next(ref s);
    }

    /// <summary>Parents near base: p = bf16(base + U(−spread, spread)).</summary>
    public static void FillNear(ReadOnlySpan<ushort> baseBits, Span<ushort> dst, ulong seed, float spread)
    {
        ulong s = seed * 2685821657736338717ul + 1;
        for (int i = 0; i < dst.Length; i++)
            dst[i] = DTypeConversion.SingleToBF16(DTypeConversion.BF16ToSingle(baseBits[i]) + spread * (2 * Next(ref s) - 1));
    }

    private static float Next(ref ulong s)
    {
        s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
        return (float)(((s * 2685821657736338717ul) >> 40) * (1.0 / 16777216.0));
    }

    /// <summary>Reinterprets raw 16-bit values as Half.</summary>
    public static Half AsHalf(ushort bits) => BitConverter.UInt16BitsToHalf(bits);

    /// <summary>Bytes of a span of unmanaged values.</summary>
    public static ReadOnlySpan<byte> Bytes<T>(ReadOnlySpan<T> s) where T : unmanaged => MemoryMarshal.AsBytes(s);
}
