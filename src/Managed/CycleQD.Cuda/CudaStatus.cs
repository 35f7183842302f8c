using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace CycleQD.Cuda;

/// <summary>The one status-to-exception path of the binding: every native call goes through <c>Check</c>.</summary>
internal static class CudaStatus
{
    internal static void Check(Interop.CUresult rc, [CallerArgumentExpression(nameof(rc))] string call = "")
    {
        if (rc != Interop.CUresult.CUDA_SUCCESS) throw Failure("CUDA driver", call, DriverName(rc), DriverDescription(rc));
    }

    internal static void Check(Interop.cublasStatus_t rc, [CallerArgumentExpression(nameof(rc))] string call = "")
    {
        if (rc != Interop.cublasStatus_t.CUBLAS_STATUS_SUCCESS) throw Failure("cuBLAS", call, Name(rc, (int)rc, "CUBLAS_STATUS_"), null);
    }

    internal static void Check(Interop.cusolverStatus_t rc, [CallerArgumentExpression(nameof(rc))] string call = "")
    {
        if (rc != Interop.cusolverStatus_t.CUSOLVER_STATUS_SUCCESS) throw Failure("cuSOLVER", call, Name(rc, (int)rc, "CUSOLVER_STATUS_"), null);
    }

    /// <summary>A cuSOLVER devInfo that is not 0: negative = bad argument, positive = no convergence / singular.</summary>
    internal static void CheckInfo(int info, string call)
    {
        if (info == 0) return;
        string detail = info < 0 ? $"parameter {-info} is wrong" : $"did not converge or hit a singular step (info = {info})";
        throw Failure("cuSOLVER", call, "devInfo " + info, detail);
    }

    internal static CudaException Failure(string library, string call, string status, string? description)
    {
        string text = $"{library} call {Shorten(call)} failed: {status}" + (string.IsNullOrEmpty(description) ? "" : $" ({description})");
        return new CudaException(library, call, status, text);
    }

    private static string Name<T>(T rc, int value, string prefix) where T : struct, Enum =>
        Enum.IsDefined(rc) ? rc.ToString() : $"{prefix}{value}";

    private static string Shorten(string call)
    {
        // "Interop.CudaDriver.cuMemAlloc(out ulong p, (nuint)bytes)" -> "cuMemAlloc(out ulong p, (nuint)bytes)"
        int paren = call.IndexOf('(');
        int dot = paren < 0 ? call.LastIndexOf('.') : call.LastIndexOf('.', paren);
        return dot >= 0 ? call[(dot + 1)..] : call;
    }

    private static string DriverName(Interop.CUresult rc)
    {
        try
        {
            if (Interop.CudaDriver.cuGetErrorName(rc, out nint p) == Interop.CUresult.CUDA_SUCCESS && p != 0)
                return Marshal.PtrToStringUTF8(p) ?? Name(rc, (int)rc, "CUDA_ERROR_");
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        return Name(rc, (int)rc, "CUDA_ERROR_");
    }

    private static string? DriverDescription(Interop.CUresult rc)
    {
        try
        {
            if (Interop.CudaDriver.cuGetErrorString(rc, out nint p) == Interop.CUresult.CUDA_SUCCESS && p != 0)
                return Marshal.PtrToStringUTF8(p);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        return null;
    }
}
