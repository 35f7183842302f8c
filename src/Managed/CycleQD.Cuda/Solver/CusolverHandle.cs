using System.Runtime.InteropServices;

namespace CycleQD.Cuda.Solver;

/// <summary>
/// A cuSOLVER dense handle bound to one stream, with the device workspace and devInfo it needs
/// (grown on demand, owned by the handle). Float32, column-major. Every call checks devInfo
/// (a synchronous read), so a failed factorisation is an exception naming the routine. Not
/// thread-safe: one handle per thread.
/// </summary>
internal sealed class CusolverHandle : IDisposable
{
    private readonly CudaContext _context;
    private readonly SolverHandle _handle;
    private DeviceBuffer<float>? _work;
    private DeviceBuffer<byte>? _workBytes;
    private DeviceBuffer<int>? _info;

    private CusolverHandle(CudaContext context, SolverHandle handle)
    {
        _context = context;
        _handle = handle;
    }

    /// <summary>Creates a handle in <paramref name="context"/> whose work goes on <paramref name="stream"/>.</summary>
    /// <exception cref="CudaUnavailableException">libcusolver (CUDA 11, 12 or 13) cannot be found.</exception>
    public static CusolverHandle Create(CudaContext context, CudaStream stream)
    {
        context.MakeCurrent();
        CudaLibraryResolver.EnsureInstalled();
        nint h;
        try { CudaStatus.Check(Interop.Cusolver.cusolverDnCreate(out h)); }
        catch (DllNotFoundException)
        {
            throw new CudaUnavailableException("cuSOLVER not found (searched " + string.Join(", ", Interop.Libraries.Sonames[Interop.Libraries.Cusolver]) + " on the loader path, CUDA_HOME, /usr/local/cuda*/lib64 and LD_LIBRARY_PATH)");
        }
        var sh = new SolverHandle(context);
        sh.Attach(h);
        CudaStatus.Check(Interop.Cusolver.cusolverDnSetStream(h, stream.Handle));
        return new CusolverHandle(context, sh);
    }

    /// <summary>In-place QR of the m×n matrix A (lda ≥ m): R in the upper triangle, Householder vectors below, τ (min(m,n) floats) in <paramref name="tau"/>.</summary>
    public void Geqrf(int m, int n, ulong a, int lda, ulong tau)
    {
        CudaStatus.Check(Interop.Cusolver.cusolverDnSgeqrf_bufferSize(H, m, n, a, lda, out int lwork));
        ulong work = Work(lwork);
        CudaStatus.Check(Interop.Cusolver.cusolverDnSgeqrf(H, m, n, a, lda, tau, work, lwork, Info(1)));
        CheckInfo(1, "cusolverDnSgeqrf");
    }

    /// <summary>Overwrites the output of <see cref="Geqrf"/> with the first n columns of Q (m×n, k reflectors).</summary>
    public void Orgqr(int m, int n, int k, ulong a, int lda, ulong tau)
    {
        CudaStatus.Check(Interop.Cusolver.cusolverDnSorgqr_bufferSize(H, m, n, k, a, lda, tau, out int lwork));
        ulong work = Work(lwork);
        CudaStatus.Check(Interop.Cusolver.cusolverDnSorgqr(H, m, n, k, a, lda, tau, work, lwork, Info(1)));
        CheckInfo(1, "cusolverDnSorgqr");
    }

    /// <summary>
    /// Thin (econ) Jacobi SVD A = U diag(S) Vᵀ of one m×n matrix: S min(m,n) descending, U m×min,
    /// V n×min (V, not Vᵀ). A is destroyed.
    /// </summary>
    /// <remarks>A <paramref name="tolerance"/> of 0 keeps cuSOLVER's default (machine epsilon); <paramref name="maxSweeps"/> bounds the Jacobi sweeps.</remarks>
    public void Gesvdj(int m, int n, ulong a, int lda, ulong s, ulong u, int ldu, ulong v, int ldv, double tolerance = 0, int maxSweeps = 100)
    {
        using var p = GesvdjParams(tolerance, maxSweeps);
        var mode = Interop.cusolverEigMode_t.CUSOLVER_EIG_MODE_VECTOR;
        CudaStatus.Check(Interop.Cusolver.cusolverDnSgesvdj_bufferSize(H, mode, 1, m, n, a, lda, s, u, ldu, v, ldv, out int lwork, p.Raw));
        ulong work = Work(lwork);
        CudaStatus.Check(Interop.Cusolver.cusolverDnSgesvdj(H, mode, 1, m, n, a, lda, s, u, ldu, v, ldv, work, lwork, Info(1), p.Raw));
        CheckInfo(1, "cusolverDnSgesvdj");
    }

    /// <summary>
    /// Full Jacobi SVD of <paramref name="batch"/> m×n matrices (m, n ≤ 32, cuSOLVER's limit), stored
    /// back to back with lda = m: S batch×min(m,n), U batch×m×m, V batch×n×n.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">m or n above 32.</exception>
    public void GesvdjBatched(int m, int n, ulong a, ulong s, ulong u, ulong v, int batch, double tolerance = 0, int maxSweeps = 100)
    {
        if (m > 32 || n > 32) throw new ArgumentOutOfRangeException(nameof(m), $"gesvdjBatched takes matrices up to 32×32, got {m}×{n}");
        using var p = GesvdjParams(tolerance, maxSweeps);
        var mode = Interop.cusolverEigMode_t.CUSOLVER_EIG_MODE_VECTOR;
        CudaStatus.Check(Interop.Cusolver.cusolverDnSgesvdjBatched_bufferSize(H, mode, m, n, a, m, s, u, m, v, n, out int lwork, p.Raw, batch));
        ulong work = Work(lwork);
        CudaStatus.Check(Interop.Cusolver.cusolverDnSgesvdjBatched(H, mode, m, n, a, m, s, u, m, v, n, work, lwork, Info(batch), p.Raw, batch));
        CheckInfo(batch, "cusolverDnSgesvdjBatched");
    }

    /// <summary>
    /// QR-based SVD (LAPACK gesvd) of one m×n matrix, m ≥ n (cuSOLVER's requirement): S n values,
    /// thin U m×n and Vᵀ n×n when <paramref name="vectors"/>, else values only (u, vt may be 0 and
    /// their leading dimensions are ignored). A is destroyed.
    /// </summary>
    /// <exception cref="ArgumentException">m &lt; n.</exception>
    public void Gesvd(int m, int n, ulong a, int lda, ulong s, ulong u, int ldu, ulong vt, int ldvt, bool vectors)
    {
        if (m < n) throw new ArgumentException($"cuSOLVER gesvd needs m >= n, got {m}×{n}; pass the transpose");
        CudaStatus.Check(Interop.Cusolver.cusolverDnSgesvd_bufferSize(H, m, n, out int lwork));
        ulong work = Work(lwork);
        sbyte job = vectors ? (sbyte)'S' : (sbyte)'N';
        // cuSOLVER validates ldu >= m and ldvt >= n even when no vectors are asked for.
        if (!vectors) { ldu = m; ldvt = n; }
        CudaStatus.Check(Interop.Cusolver.cusolverDnSgesvd(H, job, job, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, 0, Info(1)));
        CheckInfo(1, "cusolverDnSgesvd");
    }

    /// <summary>
    /// cuSOLVER's randomized SVD (Xgesvdr) of one m×n matrix (m ≥ n): rank k, oversampling p,
    /// <paramref name="powerIterations"/> power iterations; S k values, U m×k, V n×k. A is destroyed.
    /// </summary>
    public void Xgesvdr(long m, long n, long k, long p, long powerIterations, ulong a, long lda, ulong s, ulong u, long ldu, ulong v, long ldv)
    {
        if (m < n) throw new ArgumentException($"cuSOLVER Xgesvdr needs m >= n, got {m}×{n}; pass the transpose");
        CudaStatus.Check(Interop.Cusolver.cusolverDnCreateParams(out nint prm));
        try
        {
            const sbyte S = (sbyte)'S';
            var f32 = Interop.cudaDataType.CUDA_R_32F;
            CudaStatus.Check(Interop.Cusolver.cusolverDnXgesvdr_bufferSize(H, prm, S, S, m, n, k, p, powerIterations,
                f32, a, lda, f32, s, f32, u, ldu, f32, v, ldv, f32, out nuint devBytes, out nuint hostBytes));
            ulong work = WorkBytes((long)devBytes);
            nint host = hostBytes > 0 ? Marshal.AllocHGlobal((nint)hostBytes) : 0;
            try
            {
                CudaStatus.Check(Interop.Cusolver.cusolverDnXgesvdr(H, prm, S, S, m, n, k, p, powerIterations,
                    f32, a, lda, f32, s, f32, u, ldu, f32, v, ldv, f32, work, devBytes, host, hostBytes, Info(1)));
                CheckInfo(1, "cusolverDnXgesvdr");
            }
            finally { if (host != 0) Marshal.FreeHGlobal(host); }
        }
        finally { Interop.Cusolver.cusolverDnDestroyParams(prm); }
    }

    private nint H => _handle.DangerousGetHandle();

    private GesvdjInfo GesvdjParams(double tolerance, int maxSweeps)
    {
        CudaStatus.Check(Interop.Cusolver.cusolverDnCreateGesvdjInfo(out nint info));
        var p = new GesvdjInfo(info);
        if (tolerance > 0) CudaStatus.Check(Interop.Cusolver.cusolverDnXgesvdjSetTolerance(info, tolerance));
        CudaStatus.Check(Interop.Cusolver.cusolverDnXgesvdjSetMaxSweeps(info, maxSweeps));
        return p;
    }

    private ulong Work(int floats)
    {
        if (_work is null || _work.Length < floats)
        {
            _work?.Dispose();
            _work = _context.Allocate<float>(Math.Max(floats, 1));
        }
        return _work.Pointer;
    }

    private ulong WorkBytes(long bytes)
    {
        if (_workBytes is null || _workBytes.Length < bytes)
        {
            _workBytes?.Dispose();
            _workBytes = _context.Allocate<byte>(Math.Max(bytes, 1));
        }
        return _workBytes.Pointer;
    }

    private ulong Info(int count)
    {
        if (_info is null || _info.Length < count)
        {
            _info?.Dispose();
            _info = _context.Allocate<int>(count);
        }
        return _info.Pointer;
    }

    private void CheckInfo(int count, string routine)
    {
        var infos = new int[count];
        _info!.CopyTo(infos);
        for (int i = 0; i < count; i++)
            CudaStatus.CheckInfo(infos[i], count == 1 ? routine : $"{routine} (matrix {i})");
    }

    /// <summary>Frees the workspace and destroys the handle.</summary>
    public void Dispose()
    {
        _work?.Dispose();
        _workBytes?.Dispose();
        _info?.Dispose();
        _handle.Dispose();
    }

    /// <summary>The cusolverDn handle, released as every <see cref="CudaHandle"/> (by its context when only finalized).</summary>
    private sealed class SolverHandle(CudaContext context) : CudaHandle(context, NativeHandleKind.Cusolver);

    private sealed class GesvdjInfo(nint raw) : IDisposable
    {
        public nint Raw { get; } = raw;
        public void Dispose() => Interop.Cusolver.cusolverDnDestroyGesvdjInfo(Raw);
    }
}
