namespace CycleQD.Tasks.Sandbox;

/// <summary>
/// Resource limits for one sandboxed process tree. The rlimits are set with <c>prlimit</c> before
/// bubblewrap starts, so every process inside inherits them; the wall clock is enforced by the
/// caller, which kills the whole tree.
/// </summary>
public sealed record SandboxLimits
{
    /// <summary>Wall-clock time after which the whole process tree is killed.</summary>
    public TimeSpan WallClock { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>RLIMIT_CPU in seconds (per process; SIGXCPU then SIGKILL).</summary>
    public int CpuSeconds { get; init; } = 10;

    /// <summary>RLIMIT_AS in bytes (per process).</summary>
    public long AddressSpaceBytes { get; init; } = 4L << 30;

    /// <summary>RLIMIT_FSIZE in bytes: the largest file a process may write.</summary>
    public long FileSizeBytes { get; init; } = 64L << 20;

    /// <summary>RLIMIT_NPROC: processes of the sandbox's real uid (each run gets its own uid when the caller is root).</summary>
    public int Processes { get; init; } = 64;

    /// <summary>RLIMIT_NOFILE: open file descriptors per process.</summary>
    public int OpenFiles { get; init; } = 256;

    /// <summary>
    /// Captured bytes per stream (stdout, stderr); a run that writes more is killed and marked, and
    /// only this prefix and the last <see cref="OutputTailBytes"/> bytes are kept.
    /// </summary>
    public int OutputBytes { get; init; } = 1 << 20;

    /// <summary>Bytes kept from the end of a stream that exceeded <see cref="OutputBytes"/> (the rest is read and dropped).</summary>
    public int OutputTailBytes { get; init; } = 16 << 10;

    /// <summary>Size of the private writable tmpfs work directory, in bytes.</summary>
    public long WorkDirBytes { get; init; } = 256L << 20;

    /// <summary>
    /// Size of every other writable tmpfs, in bytes, each on its own: /tmp and /dev/shm of every
    /// sandbox and each of <see cref="SandboxRequest.WritableDirs"/>. Tmpfs pages are host memory; a write past the
    /// size fails inside the sandbox with ENOSPC.
    /// </summary>
    public long TmpfsBytes { get; init; } = 64L << 20;
}
