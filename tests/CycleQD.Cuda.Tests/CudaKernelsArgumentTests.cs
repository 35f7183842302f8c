using CycleQD.Cuda.Kernels;

namespace CycleQD.Cuda.Tests;

public class CudaKernelsArgumentTests
{
    [Fact]
    public unsafe void MergeArguments_NormaliseTheWeights_AndFillOnlyTheGivenParents()
    {
        var a = CudaKernels.MergeArguments(0x1000, [0x2000, 0x3000, 0x4000], [1.0, 2.0, 1.0], 0x5000, 12345);
        Assert.Equal(0x1000ul, a.Base);
        Assert.Equal(0x5000ul, a.Out);
        Assert.Equal(12345, a.N);
        Assert.Equal(3, a.NumParents);
        Assert.Equal([0x2000ul, 0x3000ul, 0x4000ul, 0ul], new[] { a.Parents[0], a.Parents[1], a.Parents[2], a.Parents[3] });
        Assert.Equal([0.25f, 0.5f, 0.25f, 0f], new[] { a.Coef[0], a.Coef[1], a.Coef[2], a.Coef[3] });
    }

    [Fact]
    public void MergeArguments_NoParentsOrMoreThanEight_AreRejected()
    {
        Assert.Contains("got 0", Assert.Throws<ArgumentException>(() => CudaKernels.MergeArguments(1, [], [], 2, 1)).Message);
        var nine = Enumerable.Repeat(1ul, 9).ToArray();
        Assert.Contains("1 to 8 parents, got 9", Assert.Throws<ArgumentException>(() => CudaKernels.MergeArguments(1, nine, Enumerable.Repeat(1.0, 9).ToArray(), 2, 1)).Message);
    }

    [Fact]
    public void MergeArguments_WeightCountOrSumWrong_SaysWhy()
    {
        Assert.Contains("1 weights for 2 parents", Assert.Throws<ArgumentException>(() => CudaKernels.MergeArguments(1, [2, 3], [1.0], 4, 1)).Message);
        Assert.Contains("sum to 0", Assert.Throws<ArgumentException>(() => CudaKernels.MergeArguments(1, [2, 3], [1.0, -1.0], 4, 1)).Message);
        Assert.Contains("sum to NaN", Assert.Throws<ArgumentException>(() => CudaKernels.MergeArguments(1, [2], [double.NaN], 4, 1)).Message);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(256, 1)]
    [InlineData(257, 2)]
    [InlineData(1L << 40, 2112)]
    public void GridFor_CoversTheWorkUpToTheCap(long work, uint expected) =>
        Assert.Equal(expected, CudaKernels.GridFor(work, 2112));

    [Fact]
    public void Suffix_RejectsNonWeightTypes()
    {
        Assert.Equal("bf16", CudaKernels.Suffix(CycleQD.Tensors.DType.BF16));
        Assert.Contains("not I32", Assert.Throws<NotSupportedException>(() => CudaKernels.Suffix(CycleQD.Tensors.DType.I32)).Message);
    }
}
