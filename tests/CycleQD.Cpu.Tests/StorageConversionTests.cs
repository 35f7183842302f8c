using CycleQD.Cpu.Kernels;
using CycleQD.Tensors;

namespace CycleQD.Cpu.Tests;

public class StorageConversionTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(31)]
    [InlineData(1000)]
    public void NarrowBF16_AnyLength_BitIdenticalToScalar(int length)
    {
        var rng = new System.Random(length);
        var src = new float[length];
        for (int i = 0; i < length; i++) src[i] = BitConverter.Int32BitsToSingle(rng.Next(int.MinValue, int.MaxValue));
        float[] specials = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0f, -0f, float.MaxValue,
            BitConverter.Int32BitsToSingle(0x3F808000), BitConverter.Int32BitsToSingle(0x3F818000), BitConverter.Int32BitsToSingle(0x7FFFFFFF)];
        for (int i = 0; i < Math.Min(length, specials.Length); i++) src[i] = specials[i];
        var got = new ushort[length];
        Array.Fill(got, (ushort)0xDEAD);
        StorageConversion.NarrowBF16(src, got);
        for (int i = 0; i < length; i++) Assert.Equal(DTypeConversion.SingleToBF16(src[i]), got[i]);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(1001)]
    public void WidenBF16_AnyLength_Exact(int length)
    {
        var rng = new System.Random(length);
        var src = Enumerable.Range(0, length).Select(_ => (ushort)rng.Next(0, 65536)).ToArray();
        var got = new float[length];
        Array.Fill(got, float.NaN);
        StorageConversion.WidenBF16(src, got);
        for (int i = 0; i < length; i++)
            Assert.Equal(BitConverter.SingleToInt32Bits(DTypeConversion.BF16ToSingle(src[i])), BitConverter.SingleToInt32Bits(got[i]));
    }
}
