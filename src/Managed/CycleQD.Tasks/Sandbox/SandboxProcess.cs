using System.Diagnostics;
using System.Globalization;
using CycleQD.Tasks.Interop;

namespace CycleQD.Tasks.Sandbox;

/// <summary>
/// A running sandbox. Owns the bubblewrap process; disposing kills its whole tree (and with it
/// every process in the sandbox's pid namespace), waits until none of the sandbox's processes is
/// left, and only then releases the run's uid and input files.
/// </summary>
public sealed class SandboxProcess : IAsyncDisposable, IDisposable
{
    /// <summary>How long disposing waits for the kernel to finish a sandbox's processes.</summary>
    private static readonly TimeSpan StragglerWait = TimeSpan.FromSeconds(10);

    private readonly Action _release;
    private readonly Func<int, bool>? _isMember;
    private int _disposed;

    /// <param name="process">The bubblewrap process.</param>
    /// <param name="release">Frees what the sandbox held (pool uid, folders); runs last.</param>
    /// <param name="isMember">
    /// Whether a host pid belongs to this sandbox. bubblewrap's monitor exits as soon as the
    /// command does; the kernel tears the pid namespace down after that, so background processes
    /// can still be dying when the monitor is gone. With this, disposing waits for them.
    /// </param>
    internal SandboxProcess(Process process, Action release, Func<int, bool>? isMember = null)
    {
        Process = process;
        _release = release;
        _isMember = isMember;
    }

    /// <summary>The bubblewrap process (stdin/stdout/stderr are redirected).</summary>
    public Process Process { get; }

    /// <summary>Whether host process <paramref name="pid"/> belongs to this sandbox (false where the layout cannot tell).</summary>
    internal bool Owns(int pid) => _isMember?.Invoke(pid) ?? false;

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
        try
        {
            if (_isMember != null) KillStragglers(_isMember, StragglerWait);
        }
        finally
        {
            Process.Dispose();
            _release();
        }
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
        await Task.Run(Dispose).ConfigureAwait(false);
    }

    /// <summary>
    /// SIGKILLs every live (not zombie) host process that <paramref name="isMember"/> claims, until
    /// none is left. Throws, naming them, when some survive <paramref name="wait"/>.
    /// </summary>
    internal static void KillStragglers(Func<int, bool> isMember, TimeSpan wait)
    {
        int self = Environment.ProcessId;
        var sw = Stopwatch.StartNew();
        while (true)
        {
            var left = new List<int>();
            foreach (string dir in Directory.EnumerateDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid == self) continue;
                if (!IsLive(pid) || !isMember(pid)) continue;
                left.Add(pid);
                Libc.kill(pid, Libc.SIGKILL);
            }
            if (left.Count == 0) return;
            if (sw.Elapsed > wait)
                throw new SandboxUnavailableException($"sandbox processes {string.Join(", ", left)} outlived the sandbox by {wait.TotalSeconds:0} s after SIGKILL");
            Thread.Sleep(2);
        }
    }

    /// <summary>Whether <paramref name="pid"/> exists and is not a zombie (/proc/PID/stat's state).</summary>
    private static bool IsLive(int pid)
    {
        string stat;
        try { stat = File.ReadAllText($"/proc/{pid}/stat"); }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
        // "PID (COMM) S ...": COMM may hold spaces and parentheses, the state follows the last ')'.
        int close = stat.LastIndexOf(')');
        return close >= 0 && close + 2 < stat.Length && stat[close + 2] is not ('Z' or 'X');
    }

    /// <summary>Whether <paramref name="pid"/>'s real uid is <paramref name="uid"/> (/proc/PID/status).</summary>
    internal static bool HasRealUid(int pid, int uid)
    {
        try
        {
            foreach (string line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (!line.StartsWith("Uid:", StringComparison.Ordinal)) continue;
                var fields = line.Split(['\t', ' '], StringSplitOptions.RemoveEmptyEntries);
                return fields.Length > 1 && fields[1] == uid.ToString(CultureInfo.InvariantCulture);
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return false;
    }

    /// <summary>Whether <paramref name="pid"/> lives in the user namespace whose /proc link reads <paramref name="userNamespace"/>.</summary>
    internal static bool InUserNamespace(int pid, string userNamespace)
    {
        try { return new FileInfo($"/proc/{pid}/ns/user").LinkTarget == userNamespace; }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }
}
