using System.Runtime.InteropServices;
using System.Text;

namespace CycleQD.Cuda;

/// <summary>
/// A loaded PTX module (CUmodule); its functions stay valid while it is loaded. Released as every
/// <see cref="CudaHandle"/> (its context unloads it at the latest when the context is disposed).
/// </summary>
internal sealed class CudaModule : CudaHandle
{
    private CudaModule(INativeHandleOwner owner) : base(owner, NativeHandleKind.Module) { }

    /// <summary>Module name (the embedded PTX file it came from).</summary>
    public string Name { get; private set; } = "";

    /// <summary>JIT-compiles <paramref name="ptx"/> in the current context, owned by <paramref name="owner"/>; the driver's error log goes into the exception on failure.</summary>
    internal static unsafe CudaModule Load(INativeHandleOwner owner, string name, string ptx)
    {
        const int LogBytes = 16 * 1024;
        byte[] image = Encoding.ASCII.GetBytes(ptx + "\0");
        byte* errorLog = stackalloc byte[LogBytes];
        errorLog[0] = 0;
        var options = stackalloc Interop.CUjit_option[] { Interop.CUjit_option.CU_JIT_ERROR_LOG_BUFFER, Interop.CUjit_option.CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES };
        var values = stackalloc nint[] { (nint)errorLog, LogBytes };
        Interop.CUresult rc;
        nint module;
        fixed (byte* p = image)
            rc = Interop.CudaDriver.cuModuleLoadDataEx(out module, p, 2, options, values);
        if (rc != Interop.CUresult.CUDA_SUCCESS)
        {
            string log = Marshal.PtrToStringUTF8((nint)errorLog)?.Trim() ?? "";
            var e = CudaStatus.Failure("CUDA driver", $"cuModuleLoadDataEx({name})", rc.ToString(), log.Length == 0 ? "no JIT log" : "JIT log: " + log);
            throw e;
        }
        var m = new CudaModule(owner) { Name = name };
        m.Attach(module);
        return m;
    }

    /// <summary>The kernel <paramref name="entry"/> (an extern "C" __global__ name).</summary>
    public CudaFunction Function(string entry)
    {
        var rc = Interop.CudaDriver.cuModuleGetFunction(out nint f, handle, entry);
        if (rc == Interop.CUresult.CUDA_ERROR_NOT_FOUND)
            throw CudaStatus.Failure("CUDA driver", $"cuModuleGetFunction({Name}, {entry})", "CUDA_ERROR_NOT_FOUND", $"module {Name} has no kernel named {entry}");
        CudaStatus.Check(rc, $"cuModuleGetFunction({Name}, {entry})");
        return new CudaFunction(f, entry);
    }
}

/// <summary>A kernel entry point (CUfunction), valid while its module is loaded.</summary>
/// <param name="Handle">The CUfunction.</param>
/// <param name="Name">The kernel's name.</param>
internal readonly record struct CudaFunction(nint Handle, string Name)
{
    /// <summary>
    /// Launches the kernel on <paramref name="stream"/> (asynchronous) with its one by-value
    /// argument struct: <typeparamref name="TArgs"/> must match the kernel's struct byte for byte
    /// (the tests check the size against the PTX .param declaration).
    /// </summary>
    public unsafe void Launch<TArgs>(uint gridX, uint blockX, CudaStream stream, in TArgs args, uint sharedBytes = 0) where TArgs : unmanaged
    {
        if (gridX == 0 || blockX == 0) return;
        TArgs copy = args;
        void* argPtr = &copy;
        CudaStatus.Check(Interop.CudaDriver.cuLaunchKernel(Handle, gridX, 1, 1, blockX, 1, 1, sharedBytes, stream.Handle, &argPtr, null),
            $"cuLaunchKernel({Name}, grid {gridX}, block {blockX})");
    }
}
