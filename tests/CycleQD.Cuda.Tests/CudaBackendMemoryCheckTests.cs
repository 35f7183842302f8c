using CycleQD.Core.Compute;
using CycleQD.Cuda.Backend;
using CycleQD.Cuda.Planning;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Tests;

/// <summary>The CUDA backend's checks that need no GPU: the memory refusal and the merge coefficients.</summary>
public class CudaBackendMemoryCheckTests
{
    private static readonly TensorSpec[] Layer =
    [
        new("layers.0.weight", DType.BF16, [4096, 4096]),
        new("layers.0.bias", DType.BF16, [4096]),
    ];

    private static long SetBytes => Layer.Sum(t => t.ByteLength);

    private static long Workspace(int rank, int oversampling) =>
        DeviceMemoryPlan.BatchWorkspaceBytes(4096, 4096, 1, new DeviceMemoryPlanOptions(rank, oversampling));

    [Fact]
    public void EnsureResidentFits_EnoughMemory_DoesNotThrow()
    {
        long need = 6 * SetBytes + Workspace(64, 10) + CudaComputeBackend.RuntimeReserveBytes;
        CudaComputeBackend.EnsureResidentFits(Layer, 6, 64, 10, need, "Test GPU");
    }

    [Fact]
    public void EnsureResidentFits_OneByteShort_RefusesNamingCardAndNumbers()
    {
        long need = 6 * SetBytes + Workspace(64, 10) + CudaComputeBackend.RuntimeReserveBytes;
        var e = Assert.Throws<DeviceMemoryException>(() => CudaComputeBackend.EnsureResidentFits(Layer, 6, 64, 10, need - 1, "Test GPU"));
        Assert.StartsWith("Test GPU has ", e.Message);
        Assert.Contains("6 resident weight sets of 32.0 MiB", e.Message);
        Assert.EndsWith("use a larger card or --device cpu", e.Message);
    }

    [Fact]
    public void EnsureResidentFits_FullRank_CountsTheFullWorkspace()
    {
        // Rank 0 (full) plans a sketch as wide as the matrix: far more than rank 64 needs.
        long enoughForRank64 = 6 * SetBytes + Workspace(64, 10) + CudaComputeBackend.RuntimeReserveBytes;
        Assert.True(Workspace(4096, 10) > Workspace(64, 10));
        Assert.Throws<DeviceMemoryException>(() => CudaComputeBackend.EnsureResidentFits(Layer, 6, 0, 10, enoughForRank64, "Test GPU"));
    }

    [Fact]
    public void Coefficients_AreTheCpuBackendsFloat32Normalisation()
    {
        float[] w = [0.3f, 1.7f, 0.11f];
        float sum = 0;
        foreach (float x in w) sum += x;
        Assert.Equal(w.Select(x => x / sum).ToArray(), CudaComputeBackend.Coefficients(w));
    }

    [Fact]
    public void Coefficients_ZeroSum_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() => CudaComputeBackend.Coefficients([1f, -1f]));
        Assert.Equal("merge weights sum to 0", e.Message);
    }
}
