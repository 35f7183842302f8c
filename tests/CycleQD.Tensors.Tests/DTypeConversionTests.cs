using CycleQD.Tensors;

namespace CycleQD.Tensors.Tests;

public class DTypeConversionTests
{
    // Reference: round-to-nearest-even computed with exact integer arithmetic on the float bits.
    private static ushort ReferenceBF16(float f)
    {
        if (float.IsNaN(f)) return 0x7FC0;
        uint u = BitConverter.SingleToUInt32Bits(f);
        uint upper = u >> 16, lower = u & 0xFFFF;
        if (lower > 0x8000 || (lower == 0x8000 && (upper & 1) == 1)) upper++;
        return (ushort)upper;
    }

    [Fact]
    public void SingleToBF16_RandomBitPatterns_MatchRoundToNearestEvenReference()
    {
        var rng = new Random(1234);
        for (int i = 0; i < 200_000; i++)
        {
            float f = BitConverter.Int32BitsToSingle(rng.Next() ^ (rng.Next(2) << 31));
            if (float.IsNaN(f)) continue;
            Assert.Equal(ReferenceBF16(f), DTypeConversion.SingleToBF16(f));
        }
    }

    [Theory]
    [InlineData(0x3F808000u, 0x3F80)] // tie, even upper stays
    [InlineData(0x3F818000u, 0x3F82)] // tie, odd upper rounds up
    [InlineData(0x3F808001u, 0x3F81)] // above half rounds up
    [InlineData(0x7F7FFFFFu, 0x7F80)] // float.MaxValue rounds to +inf
    [InlineData(0x80000000u, 0x8000)] // -0 keeps its sign
    public void SingleToBF16_EdgeCases(uint bits, int expected)
    {
        Assert.Equal((ushort)expected, DTypeConversion.SingleToBF16(BitConverter.UInt32BitsToSingle(bits)));
    }

    [Fact]
    public void SingleToBF16_NaNStaysNaN_EvenWhenMantissaIsAllOnes()
    {
        foreach (uint bits in new[] { 0x7FFFFFFFu, 0xFFFFFFFFu, 0x7F800001u, 0x7FC00000u })
        {
            ushort b = DTypeConversion.SingleToBF16(BitConverter.UInt32BitsToSingle(bits));
            Assert.True(float.IsNaN(DTypeConversion.BF16ToSingle(b)), $"0x{bits:X8} -> 0x{b:X4}");
            Assert.Equal(bits >> 31, (uint)b >> 15);
        }
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void FromSingleThenToSingle_AllLengths_WithinStorageRounding(DType dtype)
    {
        var rng = new Random(7);
        foreach (int n in new[] { 0, 1, 7, 8, 9, 31, 33, 1000 })
        {
            var src = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 8 - 4)).ToArray();
            var bytes = new byte[n * DTypes.SizeOf(dtype)];
            DTypeConversion.FromSingle(src, dtype, bytes);
            var back = new float[n];
            DTypeConversion.ToSingle(bytes, dtype, back);
            double tol = dtype switch { DType.F32 => 0, DType.F16 => 1.0 / 2048, _ => 1.0 / 256 };
            for (int i = 0; i < n; i++)
                Assert.True(Math.Abs(back[i] - src[i]) <= tol * Math.Abs(src[i]), $"{dtype}[{i}]: {src[i]} -> {back[i]}");
        }
    }

    [Fact]
    public void ToSingle_LengthMismatch_Throws()
    {
        Assert.Throws<ArgumentException>(() => DTypeConversion.ToSingle(new byte[6], DType.F32, new float[2]));
    }

    [Fact]
    public void ToSingle_NonWeightType_Throws()
    {
        Assert.Throws<NotSupportedException>(() => DTypeConversion.ToSingle(new byte[8], DType.I64, new float[1]));
    }
}
