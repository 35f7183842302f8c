using System.Runtime.InteropServices;

namespace CycleQD.Cuda;

/// <summary>One GPU as the driver reports it.</summary>
/// <param name="Ordinal">Device ordinal.</param>
/// <param name="Name">Marketing name, e.g. "NVIDIA H100 80GB HBM3".</param>
/// <param name="TotalMemoryBytes">Global memory in bytes.</param>
/// <param name="ComputeCapability">e.g. "9.0".</param>
/// <param name="Multiprocessors">Streaming multiprocessor count.</param>
public sealed record CudaDeviceInfo(int Ordinal, string Name, long TotalMemoryBytes, string ComputeCapability, int Multiprocessors);

/// <summary>What the CUDA driver offers on this machine.</summary>
/// <param name="Available">True when the driver loaded, initialised and reports at least one GPU.</param>
/// <param name="Reason">Why CUDA is unavailable (null when available).</param>
/// <param name="DriverVersion">Driver API version as "major.minor", or null.</param>
/// <param name="Devices">GPUs found.</param>
public sealed record CudaDriverStatus(bool Available, string? Reason, string? DriverVersion, IReadOnlyList<CudaDeviceInfo> Devices);

/// <summary>Queries the CUDA driver without throwing: a missing driver or GPU is a status, not an error.</summary>
public static class CudaDeviceProbe
{
    /// <summary>Loads libcuda, initialises it and lists the devices.</summary>
    public static unsafe CudaDriverStatus Probe()
    {
        CudaLibraryResolver.EnsureInstalled();
        Interop.CUresult rc;
        try
        {
            rc = Interop.CudaDriver.cuInit(0);
        }
        catch (DllNotFoundException)
        {
            return new CudaDriverStatus(false, "no NVIDIA driver (libcuda.so.1 not found)", null, []);
        }
        catch (EntryPointNotFoundException e)
        {
            return new CudaDriverStatus(false, "libcuda.so.1 lacks an expected entry point: " + e.Message, null, []);
        }
        Interop.CudaDriver.cuDriverGetVersion(out int v);
        string version = $"{v / 1000}.{v % 1000 / 10}";
        if (rc == Interop.CUresult.CUDA_ERROR_NO_DEVICE)
            return new CudaDriverStatus(false, "the NVIDIA driver reports no GPU", version, []);
        if (rc != Interop.CUresult.CUDA_SUCCESS)
            return new CudaDriverStatus(false, $"cuInit failed: {ErrorName(rc)}", version, []);
        Interop.CudaDriver.cuDeviceGetCount(out int count);
        var devices = new List<CudaDeviceInfo>();
        byte* name = stackalloc byte[256];
        for (int i = 0; i < count; i++)
        {
            Interop.CudaDriver.cuDeviceGet(out int dev, i);
            Interop.CudaDriver.cuDeviceGetName(name, 256, dev);
            Interop.CudaDriver.cuDeviceTotalMem(out nuint mem, dev);
            Interop.CudaDriver.cuDeviceGetAttribute(out int major, Interop.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
            Interop.CudaDriver.cuDeviceGetAttribute(out int minor, Interop.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
            Interop.CudaDriver.cuDeviceGetAttribute(out int sms, Interop.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
            devices.Add(new CudaDeviceInfo(i, Marshal.PtrToStringUTF8((nint)name) ?? "?", (long)mem, $"{major}.{minor}", sms));
        }
        return count == 0
            ? new CudaDriverStatus(false, "the NVIDIA driver reports no GPU", version, [])
            : new CudaDriverStatus(true, null, version, devices);
    }

    /// <summary>Where cuBLAS and cuSOLVER were found (full path or soname), or null for each that is missing.</summary>
    public static (string? Cublas, string? Cusolver) MathLibraries() =>
        (CudaLibraryResolver.Describe(Interop.Libraries.Cublas), CudaLibraryResolver.Describe(Interop.Libraries.Cusolver));

    private static string ErrorName(Interop.CUresult rc) =>
        Interop.CudaDriver.cuGetErrorName(rc, out nint p) == Interop.CUresult.CUDA_SUCCESS && p != 0
            ? Marshal.PtrToStringUTF8(p) ?? rc.ToString() : rc.ToString();
}
