namespace CycleQD.Cuda.Tests;

public class CudaStatusTests
{
    [Fact]
    public void CublasFailure_NamesTheCallAndStatus()
    {
        var rc = Interop.cublasStatus_t.CUBLAS_STATUS_ALLOC_FAILED;
        var e = Assert.Throws<CudaException>(() => CudaStatus.Check(rc));
        Assert.Equal("cuBLAS", e.Library);
        Assert.Equal("CUBLAS_STATUS_ALLOC_FAILED", e.Status);
        Assert.Equal("cuBLAS call rc failed: CUBLAS_STATUS_ALLOC_FAILED", e.Message);
    }

    [Fact]
    public void FailureMessage_QuotesTheCallExpressionWithoutTheClassPrefix()
    {
        static Interop.cusolverStatus_t FakeGeqrf(int m, int n) => Interop.cusolverStatus_t.CUSOLVER_STATUS_INVALID_VALUE;
        var e = Assert.Throws<CudaException>(() => CudaStatus.Check(FakeGeqrf(3, 4)));
        Assert.Equal("cuSOLVER call FakeGeqrf(3, 4) failed: CUSOLVER_STATUS_INVALID_VALUE", e.Message);
    }

    [Fact]
    public void UnknownStatusValue_IsPrintedWithItsNumber()
    {
        var e = Assert.Throws<CudaException>(() => CudaStatus.Check((Interop.cusolverStatus_t)42, "cusolverDnSgesvd"));
        Assert.Equal("CUSOLVER_STATUS_42", e.Status);
    }

    [Fact]
    public void DriverFailure_CarriesTheDriversNameAndDescription()
    {
        var e = Assert.Throws<CudaException>(() => CudaStatus.Check(Interop.CUresult.CUDA_ERROR_OUT_OF_MEMORY, "cuMemAlloc"));
        Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", e.Status);
        Assert.StartsWith("CUDA driver call cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY", e.Message);
    }

    [Fact]
    public void SolverInfo_NegativeNamesTheParameter_PositiveSaysNoConvergence()
    {
        Assert.Contains("parameter 4 is wrong", Assert.Throws<CudaException>(() => CudaStatus.CheckInfo(-4, "cusolverDnSgesvdj")).Message);
        Assert.Contains("did not converge", Assert.Throws<CudaException>(() => CudaStatus.CheckInfo(7, "cusolverDnSgesvdj")).Message);
        CudaStatus.CheckInfo(0, "cusolverDnSgesvdj");
    }

    [Fact]
    public void CudaContext_WithoutGpu_ThrowsCudaUnavailableWithTheProbeReason()
    {
        var status = CudaDeviceProbe.Probe();
        if (status.Available) Assert.Skip("a GPU is present");
        var e = Assert.Throws<CudaUnavailableException>(() => CudaContext.Create());
        Assert.Equal(status.Reason, e.Reason);
        Assert.Equal("CUDA is unavailable: " + status.Reason, e.Message);
    }
}
