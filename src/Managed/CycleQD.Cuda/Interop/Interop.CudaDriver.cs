using System.Runtime.InteropServices;

namespace CycleQD.Cuda;

internal static partial class Interop
{
    /// <summary>CUDA driver API (libcuda.so.1), only the entry points the engine calls.</summary>
    internal static partial class CudaDriver
    {
        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuInit")]
        internal static partial CUresult cuInit(uint flags);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuDriverGetVersion")]
        internal static partial CUresult cuDriverGetVersion(out int version);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuDeviceGetCount")]
        internal static partial CUresult cuDeviceGetCount(out int count);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuDeviceGet")]
        internal static partial CUresult cuDeviceGet(out int device, int ordinal);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuDeviceGetName")]
        internal static unsafe partial CUresult cuDeviceGetName(byte* name, int length, int device);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuDeviceTotalMem_v2")]
        internal static partial CUresult cuDeviceTotalMem(out nuint bytes, int device);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuDeviceGetAttribute")]
        internal static partial CUresult cuDeviceGetAttribute(out int value, CUdevice_attribute attribute, int device);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuGetErrorName")]
        internal static partial CUresult cuGetErrorName(CUresult error, out nint name);
    }

    internal enum CUresult
    {
        CUDA_SUCCESS = 0,
        CUDA_ERROR_INVALID_VALUE = 1,
        CUDA_ERROR_OUT_OF_MEMORY = 2,
        CUDA_ERROR_NOT_INITIALIZED = 3,
        CUDA_ERROR_NO_DEVICE = 100,
        CUDA_ERROR_INVALID_DEVICE = 101,
    }

    internal enum CUdevice_attribute
    {
        CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
    }
}
