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

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuGetErrorString")]
        internal static partial CUresult cuGetErrorString(CUresult error, out nint text);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuDevicePrimaryCtxRetain")]
        internal static partial CUresult cuDevicePrimaryCtxRetain(out nint context, int device);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuDevicePrimaryCtxRelease_v2")]
        internal static partial CUresult cuDevicePrimaryCtxRelease(int device);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuCtxSetCurrent")]
        internal static partial CUresult cuCtxSetCurrent(nint context);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuCtxSynchronize")]
        internal static partial CUresult cuCtxSynchronize();

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuModuleLoadDataEx")]
        internal static unsafe partial CUresult cuModuleLoadDataEx(out nint module, byte* image, uint numOptions, CUjit_option* options, nint* optionValues);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuModuleUnload")]
        internal static partial CUresult cuModuleUnload(nint module);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuModuleGetFunction", StringMarshalling = StringMarshalling.Utf8)]
        internal static partial CUresult cuModuleGetFunction(out nint function, nint module, string name);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuLaunchKernel")]
        internal static unsafe partial CUresult cuLaunchKernel(nint function, uint gridX, uint gridY, uint gridZ,
            uint blockX, uint blockY, uint blockZ, uint sharedMemBytes, nint stream, void** kernelParams, void** extra);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuMemAlloc_v2")]
        internal static partial CUresult cuMemAlloc(out ulong devicePtr, nuint bytes);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuMemFree_v2")]
        internal static partial CUresult cuMemFree(ulong devicePtr);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuMemGetInfo_v2")]
        internal static partial CUresult cuMemGetInfo(out nuint free, out nuint total);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuMemcpyHtoD_v2")]
        internal static unsafe partial CUresult cuMemcpyHtoD(ulong dst, void* src, nuint bytes);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuMemcpyDtoH_v2")]
        internal static unsafe partial CUresult cuMemcpyDtoH(void* dst, ulong src, nuint bytes);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuMemcpyDtoD_v2")]
        internal static partial CUresult cuMemcpyDtoD(ulong dst, ulong src, nuint bytes);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuMemcpyHtoDAsync_v2")]
        internal static unsafe partial CUresult cuMemcpyHtoDAsync(ulong dst, void* src, nuint bytes, nint stream);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuMemcpyDtoHAsync_v2")]
        internal static unsafe partial CUresult cuMemcpyDtoHAsync(void* dst, ulong src, nuint bytes, nint stream);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuMemcpyDtoDAsync_v2")]
        internal static partial CUresult cuMemcpyDtoDAsync(ulong dst, ulong src, nuint bytes, nint stream);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuMemsetD8_v2")]
        internal static partial CUresult cuMemsetD8(ulong dst, byte value, nuint count);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuMemsetD8Async")]
        internal static partial CUresult cuMemsetD8Async(ulong dst, byte value, nuint count, nint stream);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuMemHostAlloc")]
        internal static partial CUresult cuMemHostAlloc(out nint hostPtr, nuint bytes, uint flags);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuMemFreeHost")]
        internal static partial CUresult cuMemFreeHost(nint hostPtr);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuStreamWaitEvent")]
        internal static partial CUresult cuStreamWaitEvent(nint stream, nint evt, uint flags);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuStreamCreate")]
        internal static partial CUresult cuStreamCreate(out nint stream, uint flags);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuStreamDestroy_v2")]
        internal static partial CUresult cuStreamDestroy(nint stream);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuStreamSynchronize")]
        internal static partial CUresult cuStreamSynchronize(nint stream);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuEventCreate")]
        internal static partial CUresult cuEventCreate(out nint evt, uint flags);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuEventDestroy_v2")]
        internal static partial CUresult cuEventDestroy(nint evt);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuEventRecord")]
        internal static partial CUresult cuEventRecord(nint evt, nint stream);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuEventSynchronize")]
        internal static partial CUresult cuEventSynchronize(nint evt);

        [LibraryImport(Libraries.CudaDriver, EntryPoint = "cuEventElapsedTime")]
        internal static partial CUresult cuEventElapsedTime(out float milliseconds, nint start, nint end);
    }

    internal enum CUresult
    {
        CUDA_SUCCESS = 0,
        CUDA_ERROR_INVALID_VALUE = 1,
        CUDA_ERROR_OUT_OF_MEMORY = 2,
        CUDA_ERROR_NOT_INITIALIZED = 3,
        CUDA_ERROR_DEINITIALIZED = 4,
        CUDA_ERROR_NO_DEVICE = 100,
        CUDA_ERROR_INVALID_DEVICE = 101,
        CUDA_ERROR_INVALID_PTX = 218,
        CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222,
        CUDA_ERROR_NOT_FOUND = 500,
        CUDA_ERROR_LAUNCH_FAILED = 719,
    }

    internal enum CUdevice_attribute
    {
        CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
        CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38,
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
    }

    internal enum CUjit_option
    {
        CU_JIT_INFO_LOG_BUFFER = 3,
        CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4,
        CU_JIT_ERROR_LOG_BUFFER = 5,
        CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
    }
}
