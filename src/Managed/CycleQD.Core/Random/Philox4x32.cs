using System.Runtime.CompilerServices;

namespace CycleQD.Core.Random;

/// <summary>
/// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, SC'11): a counter-based generator, so any draw can be
/// computed from its coordinates alone, on the CPU or in a CUDA kernel, with identical results.
/// <para>Key = (lo32(seed), hi32(seed)) of the 64-bit run seed. Counter = (lo32(i), hi32(i), stream,
/// generation), where i is the index of a 4-word block inside the stream, stream is a uint32 (the
/// tensor index for per-tensor draws, or one of <see cref="Streams"/>) and generation is the
/// generation number. Every block yields 4 independent 32-bit words.</para>
/// </summary>
public static class Philox4x32
{
    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>One 4-word block for counter (c0..c3) under key (k0, k1), 10 rounds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (uint X0, uint X1, uint X2, uint X3) Block(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (int round = 0; round < 10; round++)
        {
            if (round > 0) { k0 += W0; k1 += W1; }
            ulong p0 = (ulong)M0 * c0;
            ulong p1 = (ulong)M1 * c2;
            uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0;
            uint hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
        }
        return (c0, c1, c2, c3);
    }

    /// <summary>The block with index <paramref name="block"/> of (seed, stream, generation).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (uint X0, uint X1, uint X2, uint X3) Block(ulong seed, uint stream, uint generation, ulong block) =>
        Block((uint)block, (uint)(block >> 32), stream, generation, (uint)seed, (uint)(seed >> 32));

    /// <summary>Word <paramref name="index"/> (block index/4, lane index%4) of (seed, stream, generation).</summary>
    public static uint Word(ulong seed, uint stream, uint generation, ulong index)
    {
        var b = Block(seed, stream, generation, index >> 2);
        return (index & 3) switch { 0 => b.X0, 1 => b.X1, 2 => b.X2, _ => b.X3 };
    }

    /// <summary>Uniform float in [0, 1) from a 32-bit word: (x &gt;&gt; 8) · 2^-24 (exact in float32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToUniform(uint x) => (x >> 8) * (1.0f / 16777216.0f);

    /// <summary>Uniform float in (0, 1]: ((x &gt;&gt; 8) + 1) · 2^-24; used where a logarithm follows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToUniformOpenZero(uint x) => ((x >> 8) + 1) * (1.0f / 16777216.0f);

    /// <summary>
    /// Two standard normal floats from two words by Box–Muller:
    /// z0 = √(−2 ln u1) cos(2π u2), z1 = √(−2 ln u1) sin(2π u2), u1 = ToUniformOpenZero(a), u2 = ToUniform(b).
    /// Computed in float64 and rounded, so CPU and GPU agree to within one float32 ulp.
    /// </summary>
    public static (float Z0, float Z1) BoxMuller(uint a, uint b)
    {
        double r = Math.Sqrt(-2.0 * Math.Log(ToUniformOpenZero(a)));
        double t = 2.0 * Math.PI * ToUniform(b);
        return ((float)(r * Math.Cos(t)), (float)(r * Math.Sin(t)));
    }

    /// <summary>
    /// Standard normal number <paramref name="index"/> of (seed, stream, generation, purpose): block
    /// (purpose·2^32 + index/2); the cosine branch of Box–Muller on words (0,1) for even indices and
    /// on words (2,3) for odd ones.
    /// </summary>
    public static float Normal(ulong seed, uint stream, uint generation, uint purpose, ulong index)
    {
        var b = Block(seed, stream, generation, ((ulong)purpose << 32) + (index >> 1));
        return (index & 1) == 0 ? BoxMuller(b.X0, b.X1).Z0 : BoxMuller(b.X2, b.X3).Z0;
    }

    /// <summary>
    /// Normals <paramref name="start"/> … <paramref name="start"/> + destination.Length − 1 of
    /// (seed, stream, generation, purpose): element for element what <see cref="Normal"/> returns,
    /// but one Philox block serves the two indices 2j and 2j + 1 that share it, and only the cosine
    /// branch is evaluated. The CPU backend's Gaussian mutation draws its noise here, and so does the
    /// CUDA backend's (on the host: see docs/cuda.md), which keeps the two bit-identical.
    /// </summary>
    public static void FillNormal(Span<float> destination, ulong seed, uint stream, uint generation, uint purpose, ulong start)
    {
        ulong hi = (ulong)purpose << 32;
        int e = 0;
        if ((start & 1) == 1 && destination.Length > 0)
        {
            var b = Block(seed, stream, generation, hi + (start >> 1));
            destination[e++] = CosineBranch(b.X2, b.X3);
        }
        for (; e + 1 < destination.Length; e += 2)
        {
            var b = Block(seed, stream, generation, hi + ((start + (ulong)e) >> 1));
            destination[e] = CosineBranch(b.X0, b.X1);
            destination[e + 1] = CosineBranch(b.X2, b.X3);
        }
        if (e < destination.Length)
        {
            var b = Block(seed, stream, generation, hi + ((start + (ulong)e) >> 1));
            destination[e] = CosineBranch(b.X0, b.X1);
        }
    }

    /// <summary>Z0 of <see cref="BoxMuller"/>, the same float64 expressions without the sine.</summary>
    private static float CosineBranch(uint a, uint b)
    {
        double r = Math.Sqrt(-2.0 * Math.Log(ToUniformOpenZero(a)));
        double t = 2.0 * Math.PI * ToUniform(b);
        return (float)(r * Math.Cos(t));
    }

    /// <summary>
    /// Uniform float in [0, 1), number <paramref name="index"/> of (seed, stream, generation, purpose):
    /// word index%4 of block (purpose·2^32 + index/4).
    /// </summary>
    public static float Uniform(ulong seed, uint stream, uint generation, uint purpose, ulong index)
    {
        var b = Block(seed, stream, generation, ((ulong)purpose << 32) + (index >> 2));
        uint w = (index & 3) switch { 0 => b.X0, 1 => b.X1, 2 => b.X2, _ => b.X3 };
        return ToUniform(w);
    }
}

/// <summary>
/// Stream numbers and purposes. Per-tensor draws use the tensor's index (its position in the base
/// model's tensor list) as the stream; whole-generation draws use the reserved streams below, above
/// any tensor index. Within a stream, hi32 of the block index separates purposes
/// (block = purpose · 2^32 + i), so different uses never share a block.
/// </summary>
public static class Streams
{
    /// <summary>Parent selection (uniform words, purpose 0).</summary>
    public const uint ParentSampling = 0xFFFF_FF00;

    /// <summary>Crossover weights (normals, purpose 0).</summary>
    public const uint Crossover = 0xFFFF_FF01;

    /// <summary>Purpose for the SVD mutation's scales r_j = w_max · Uniform(j) in a tensor's stream.</summary>
    public const uint SvdScale = 0;

    /// <summary>Purpose for the randomized SVD's Gaussian test matrix (element index row-major, n × l) in a tensor's stream.</summary>
    public const uint SvdSketch = 1;

    /// <summary>Purpose for the Gaussian mutation's noise (element index) in a tensor's stream.</summary>
    public const uint GaussianNoise = 2;
}
