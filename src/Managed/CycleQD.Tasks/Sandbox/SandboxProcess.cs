using System.Diagnostics;

namespace CycleQD.Tasks.Sandbox;

/// <summary>
/// A running sandbox. Owns the bubblewrap process; disposing kills its whole tree (and with it
/// every process in the sandbox's pid namespace) and releases the run's uid and input files.
/// </summary>
public sealed class SandboxProcess : IAsyncDisposable, IDisposable
{
    private readonly Action _release;
    private int _disposed;

    internal SandboxProcess(Process process, Action release)
    {
        Process = process;
        _release = release;
    }

    /// <summary>The bubblewrap process (stdin/stdout/stderr are redirected).</summary>
    public Process Process { get; }

    /// <summary>Kills the whole tree now; safe to call more than once and after exit.</summary>
    public void KillTree()
    {
        try
        {
            if (!Process.HasExited) Process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException) { }
        catch (System.ComponentModel.Win32Exception) { }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        KillTree();
        try { Process.WaitForExit(5000); } catch (InvalidOperationException) { }
        Process.Dispose();
        _release();
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        if (Volatile.Read(ref _disposed) != 0) return;
        KillTree();
        try
        {
            using var cts = new CancellationTokenSource(5000);
            await Process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) { }
        catch (InvalidOperationException) { }
        Dispose();
    }
}
