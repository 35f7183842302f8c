using CycleQD.Core;
using CycleQD.Core.Compute;
using CycleQD.Cpu;
using CycleQD.Cuda;
using CycleQD.Cuda.Backend;

namespace CycleQD.Runs;

/// <summary>Where a run's tensor work goes.</summary>
public enum ComputeDevice
{
    /// <summary>The GPU when CUDA is usable, else the CPU with a one-line notice.</summary>
    Auto,
    /// <summary>The CPU backend.</summary>
    Cpu,
    /// <summary>The CUDA backend on GPU 0; an error when CUDA is unusable.</summary>
    Cuda,
}

/// <summary>
/// Picks the compute backend for a run. Availability is decided before any weight is uploaded:
/// the driver and a GPU (<see cref="CudaDeviceProbe"/>), the kernels embedded in this build
/// (<see cref="PtxCatalog"/>) and a mutation kind the GPU implements (all of them).
/// </summary>
public static class BackendSelection
{
    /// <summary>"auto", "cpu" or "cuda" (any case).</summary>
    /// <exception cref="ConfigurationException">any other text; the message names the option.</exception>
    public static ComputeDevice Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "auto" => ComputeDevice.Auto,
        "cpu" => ComputeDevice.Cpu,
        "cuda" or "gpu" => ComputeDevice.Cuda,
        _ => throw new ConfigurationException($"--device {text}: expected auto, cpu or cuda"),
    };

    /// <summary>Why the CUDA backend cannot run <paramref name="mutation"/> here, or null when it can.</summary>
    /// <param name="mutation">The experiment's mutation settings.</param>
    /// <param name="driver">The driver's status (from <see cref="CudaDeviceProbe.Probe"/>).</param>
    /// <param name="kernelsEmbedded">Whether this build carries the PTX kernels.</param>
    public static string? CudaUnusableReason(MutationOptions mutation, CudaDriverStatus driver, bool kernelsEmbedded)
    {
        if (!driver.Available) return driver.Reason ?? "unknown reason";
        if (!kernelsEmbedded) return "this build has no CUDA kernels (nvcc was missing when it was built)";
        // Every mutation kind runs on the GPU (the Gaussian one with host-drawn noise, bit-identical to the CPU).
        if (!Enum.IsDefined(mutation.Kind)) return $"mutation kind {(int)mutation.Kind} is unknown to the CUDA backend";
        return null;
    }

    /// <summary>
    /// The backend for <paramref name="device"/>. <c>auto</c> falls back to the CPU and reports once
    /// through <paramref name="notice"/> ("notice: CUDA unavailable (REASON); using the CPU backend").
    /// <paramref name="probe"/> and <paramref name="openCuda"/> default to the real driver and GPU 0.
    /// </summary>
    /// <exception cref="CudaUnavailableException"><c>cuda</c> was asked for and cannot be used; the message says why.</exception>
    public static IComputeBackend Create(ComputeDevice device, MutationOptions mutation, Action<string>? notice,
        Func<CudaDriverStatus>? probe = null, Func<bool>? kernelsEmbedded = null, Func<IComputeBackend>? openCuda = null)
    {
        if (device == ComputeDevice.Cpu) return new CpuComputeBackend();
        probe ??= CudaDeviceProbe.Probe;
        kernelsEmbedded ??= () => PtxCatalog.List().Count > 0;
        openCuda ??= () => CudaComputeBackend.Create();
        string? reason = CudaUnusableReason(mutation, probe(), kernelsEmbedded());
        if (reason is null)
        {
            try
            {
                return openCuda();
            }
            catch (Exception e) when (device == ComputeDevice.Auto && e is CudaUnavailableException or CudaException or DllNotFoundException)
            {
                reason = e is CudaUnavailableException u ? u.Reason : e.Message;
            }
        }
        if (device == ComputeDevice.Cuda) throw new CudaUnavailableException(reason + "; --device cuda cannot be honoured (use --device auto or cpu)");
        notice?.Invoke($"notice: CUDA unavailable ({reason}); using the CPU backend");
        return new CpuComputeBackend();
    }
}
