using CycleQD.Cpu.Kernels;
using CycleQD.Tensors;

namespace CycleQD.Cpu.Tests;

/// <summary>
/// The fused one-pass kernels against the element-by-element definition they promise to equal bit for
/// bit (widen, subtract, fused multiply-add per parent in order, round to the storage type), on random
/// bit patterns (NaNs, infinities and subnormals among them), rounding ties, and lengths that leave a tail.
/// </summary>
public unsafe class FusedMergeTests
{
    private static ushort Expected(ushort b, ushort[][] parents, float[] coef, int i)
    {
        float vb = DTypeConversion.BF16ToSingle(b), acc = vb;
        for (int p = 0; p < parents.Length; p++) acc = MathF.FusedMultiplyAdd(DTypeConversion.BF16ToSingle(parents[p][i]) - vb, coef[p], acc);
        return DTypeConversion.SingleToBF16(acc);
    }

    [Theory]
    [InlineData(0, 1, 1)]
    [InlineData(1, 2, 2)]
    [InlineData(15, 2, 3)]
    [InlineData(33, 1, 4)]
    [InlineData(4099, 2, 5)]
    [InlineData(4099, 3, 6)]
    [InlineData(1000, 8, 7)]
    public void BF16_RandomBitsAnyLength_BitIdenticalToTheDefinition(int count, int np, int seed)
    {
        var rng = new System.Random(seed);
        ushort[] Bits() => Enumerable.Range(0, count).Select(_ => (ushort)rng.Next(0, 65536)).ToArray();
        // Mostly ordinary numbers near 1 (so sums round, with ties among them), some arbitrary bit patterns.
        ushort[] Near() => Enumerable.Range(0, count).Select(_ => rng.Next(4) == 0 ? (ushort)rng.Next(0, 65536) : (ushort)(0x3F00 + rng.Next(0, 0x200))).ToArray();
        var b = Near();
        var parents = Enumerable.Range(0, np).Select(p => p == np - 1 && np > 1 ? Bits() : Near()).ToArray();
        // Weights that make exact ties likely for some elements (0.5) and ordinary ones.
        var coef = Enumerable.Range(0, np).Select(p => p == 0 ? 0.5f : (float)(rng.NextDouble() * 1.2 - 0.1)).ToArray();
        ushort[] specials = [0x7FC0, 0x7F81, 0xFF81, 0x7F80, 0xFF80, 0x0001, 0x8001, 0x0000, 0x8000, 0x7F7F];
        for (int i = 0; i < Math.Min(count, specials.Length); i++) parents[0][i] = specials[i];
        var got = new ushort[count];
        Array.Fill(got, (ushort)0xDEAD);
        var handles = parents.Select(p => System.Runtime.InteropServices.GCHandle.Alloc(p, System.Runtime.InteropServices.GCHandleType.Pinned)).ToArray();
        try
        {
            fixed (ushort* pb = b, pd = got)
                FusedMerge.BF16(pb, handles.Select(h => h.AddrOfPinnedObject()).ToArray(), coef, pd, count);
        }
        finally
        {
            foreach (var h in handles) h.Free();
        }
        for (int i = 0; i < count; i++)
            Assert.True(Expected(b[i], parents, coef, i) == got[i], $"element {i}: expected 0x{Expected(b[i], parents, coef, i):X4}, got 0x{got[i]:X4}");
    }

    [Fact]
    public void BF16_RoundingTies_GoToEven()
    {
        // base 1.0, one parent: child = 1 + c·(θ − 1). With θ = 1 + 2⁻⁷ (one bf16 ulp) and c = 0.5 the exact
        // result is 1 + 2⁻⁸, halfway between 1 and 1 + 2⁻⁷: it rounds to 1 (even); from 1 + 3·2⁻⁷ it is
        // halfway between 1 + 2⁻⁷ and 1 + 2·2⁻⁷ and rounds to 1 + 2·2⁻⁷ (even).
        const int n = 64;
        var b = Enumerable.Repeat((ushort)0x3F80, n).ToArray();
        var p = Enumerable.Range(0, n).Select(i => i % 2 == 0 ? (ushort)0x3F81 : (ushort)0x3F83).ToArray();
        var got = new ushort[n];
        fixed (ushort* pb = b, pp = p, pd = got)
            FusedMerge.BF16(pb, [(nint)pp], [0.5f], pd, n);
        for (int i = 0; i < n; i++) Assert.Equal(i % 2 == 0 ? (ushort)0x3F80 : (ushort)0x3F82, got[i]);
    }
}
