using CycleQD.Core.Random;

namespace CycleQD.Core.Tests;

public class PhiloxTests
{
    // Known-answer vectors of philox4x32_10 from Random123's kat_vectors.
    [Theory]
    [InlineData(0u, 0u, 0u, 0u, 0u, 0u, 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u)]
    [InlineData(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu)]
    [InlineData(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u, 0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u)]
    public void Block_KnownAnswerVectors_Match(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1, uint x0, uint x1, uint x2, uint x3)
    {
        var r = Philox4x32.Block(c0, c1, c2, c3, k0, k1);
        Assert.Equal((x0, x1, x2, x3), r);
    }

    [Fact]
    public void Block_SeedAndCoordinates_MapToKeyAndCounter()
    {
        ulong seed = 0x299f31d0_a4093822UL;
        ulong block = 0x85a308d3_243f6a88UL;
        Assert.Equal(Philox4x32.Block(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u),
            Philox4x32.Block(seed, 0x13198a2eu, 0x03707344u, block));
    }

    [Fact]
    public void ToUniform_Extremes_StayInHalfOpenUnitInterval()
    {
        Assert.Equal(0f, Philox4x32.ToUniform(0));
        Assert.Equal(1f - 1f / 16777216f, Philox4x32.ToUniform(uint.MaxValue));
        Assert.Equal(1f, Philox4x32.ToUniformOpenZero(uint.MaxValue));
        Assert.True(Philox4x32.ToUniformOpenZero(0) > 0);
    }

    [Fact]
    public void Normal_ManyDraws_HaveUnitMomentsAndNoRepeats()
    {
        const int n = 200_000;
        double sum = 0, sumSq = 0;
        for (int i = 0; i < n; i++)
        {
            double z = Philox4x32.Normal(42, 3, 5, 0, (ulong)i);
            sum += z; sumSq += z * z;
        }
        double mean = sum / n, variance = sumSq / n - mean * mean;
        Assert.InRange(mean, -5 / Math.Sqrt(n), 5 / Math.Sqrt(n));
        Assert.InRange(variance, 1 - 5 * Math.Sqrt(2.0 / n), 1 + 5 * Math.Sqrt(2.0 / n));
        Assert.NotEqual(Philox4x32.Normal(42, 3, 5, 0, 0), Philox4x32.Normal(42, 3, 6, 0, 0));
        Assert.NotEqual(Philox4x32.Normal(42, 3, 5, 0, 0), Philox4x32.Normal(42, 4, 5, 0, 0));
    }

    /// <summary>The block-pair fill both backends' Gaussian mutation use draws exactly <see cref="Philox4x32.Normal"/>, from even and odd starts.</summary>
    [Theory]
    [InlineData(0UL, 0)]
    [InlineData(0UL, 1)]
    [InlineData(1UL, 1)]
    [InlineData(1UL, 2)]
    [InlineData(7UL, 1000)]
    [InlineData(0x1_0000_0001UL, 33)]
    public void FillNormal_EqualsNormal_BitForBit(ulong start, int count)
    {
        var got = new float[count];
        Philox4x32.FillNormal(got, 0xDEADBEEFCAFEUL, 9, 4, Streams.GaussianNoise, start);
        for (int e = 0; e < count; e++)
            Assert.Equal(BitConverter.SingleToInt32Bits(Philox4x32.Normal(0xDEADBEEFCAFEUL, 9, 4, Streams.GaussianNoise, start + (ulong)e)),
                BitConverter.SingleToInt32Bits(got[e]));
    }
}
