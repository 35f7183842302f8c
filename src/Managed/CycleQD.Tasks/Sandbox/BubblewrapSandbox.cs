using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;

namespace CycleQD.Tasks.Sandbox;

/// <summary>
/// Runs commands under bubblewrap: all namespaces unshared (no network, private pid/ipc/uts),
/// <c>--die-with-parent</c>, <c>--new-session</c>, every capability dropped, read-only system
/// binds, a private tmpfs work dir, rlimits from <c>prlimit</c>, and a wall clock that kills the
/// whole tree (the sandbox's pid 1 dies with bubblewrap, which takes every process in its pid
/// namespace with it).
/// </summary>
/// <remarks>
/// RLIMIT_NPROC counts processes per real uid and is not enforced for root, so when the caller is
/// root each run switches (setpriv) to its own unprivileged host uid from a pool before
/// bubblewrap starts; as a non-root caller the runs share the caller's uid and the process limit
/// counts all of that user's processes.
/// </remarks>
public sealed partial class BubblewrapSandbox
{
    internal const int UidPoolBase = 61000;
    internal const int UidPoolSize = 512;
    private static readonly ConcurrentQueue<int> FreeUids = new(Enumerable.Range(UidPoolBase, UidPoolSize));

    private readonly string _bwrap;
    private readonly string _prlimit;
    private readonly string? _setpriv;

    private BubblewrapSandbox(string bwrap, string prlimit, string? setpriv)
    {
        _bwrap = bwrap;
        _prlimit = prlimit;
        _setpriv = setpriv;
    }

    /// <summary>The sandbox on this machine; throws <see cref="SandboxUnavailableException"/> naming what is missing.</summary>
    public static BubblewrapSandbox Create()
    {
        string bwrap = FindTool("bwrap") ?? throw new SandboxUnavailableException("bubblewrap (bwrap) is not installed; it is needed to run model-written code (Debian: apt-get install bubblewrap, or ./build.sh setup)");
        string prlimit = FindTool("prlimit") ?? throw new SandboxUnavailableException("prlimit (util-linux) is not installed; it sets the sandbox's resource limits");
        string? setpriv = null;
        if (IsRoot)
            setpriv = FindTool("setpriv") ?? throw new SandboxUnavailableException("setpriv (util-linux) is not installed; as root it is needed to run the sandbox under an unprivileged uid");
        return new BubblewrapSandbox(bwrap, prlimit, setpriv);
    }

    private static bool IsRoot => Environment.IsPrivilegedProcess;

    private static string? FindTool(string name)
    {
        foreach (var dir in new[] { "/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin" })
        {
            string p = Path.Combine(dir, name);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    /// <summary>Runs <paramref name="request"/> to completion (or until a limit stops it).</summary>
    public Task<SandboxResult> RunAsync(SandboxRequest request, CancellationToken cancellationToken = default) =>
        RunCoreAsync(request, (stdout, proc) => CaptureBoundedAsync(stdout, request.Limits.OutputBytes, request.Limits.OutputTailBytes, proc.KillTree), cancellationToken);

    /// <summary>
    /// Runs <paramref name="request"/> with its stdout copied into <paramref name="stdoutSink"/>
    /// instead of memory: at most <paramref name="stdoutLimit"/> bytes, and a run that writes more
    /// is killed and marked (<see cref="SandboxResult.OutputLimitExceeded"/>); the result's
    /// <see cref="SandboxResult.Stdout"/> is empty.
    /// </summary>
    public Task<SandboxResult> RunAsync(SandboxRequest request, Stream stdoutSink, long stdoutLimit, CancellationToken cancellationToken = default) =>
        RunCoreAsync(request, async (stdout, proc) => (string.Empty, await CopyBoundedAsync(stdout, stdoutSink, stdoutLimit, proc.KillTree).ConfigureAwait(false)), cancellationToken);

    private async Task<SandboxResult> RunCoreAsync(SandboxRequest request, Func<Stream, SandboxProcess, Task<(string Text, bool Exceeded)>> readStdout, CancellationToken cancellationToken)
    {
        await using var proc = Start(request);
        var limits = request.Limits;
        var sw = Stopwatch.StartNew();
        var stdoutTask = readStdout(proc.Process.StandardOutput.BaseStream, proc);
        var stderrTask = CaptureBoundedAsync(proc.Process.StandardError.BaseStream, limits.OutputBytes, limits.OutputTailBytes, proc.KillTree);
        try
        {
            if (request.Stdin is { } stdin)
                await proc.Process.StandardInput.WriteAsync(stdin.AsMemory(), cancellationToken).ConfigureAwait(false);
            proc.Process.StandardInput.Close();
        }
        catch (IOException)
        {
            // The command exited without reading its stdin; that is its business.
        }

        bool timedOut = false;
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            timeout.CancelAfter(limits.WallClock);
            try
            {
                await proc.Process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                cancellationToken.ThrowIfCancellationRequested();
                timedOut = true;
                proc.KillTree();
                await proc.Process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        var (stdout, outOver) = await stdoutTask.ConfigureAwait(false);
        var (stderr, errOver) = await stderrTask.ConfigureAwait(false);
        sw.Stop();
        return new SandboxResult(proc.Process.ExitCode, stdout, stderr, timedOut, outOver || errOver, sw.Elapsed);
    }

    /// <summary>
    /// Starts <paramref name="request"/> and hands back the live process (stdin/stdout/stderr
    /// redirected) for interactive use; disposing it kills the whole tree and releases the uid.
    /// <see cref="SandboxRequest.Stdin"/> is ignored here.
    /// </summary>
    public SandboxProcess Start(SandboxRequest request)
    {
        if (request.RootFilesystem is { } rootfs) return StartOnRootFilesystem(request, rootfs);
        UidLease? lease = null;
        string? inputDir = null;
        try
        {
            if (_setpriv != null) lease = TakeUid();
            if (request.InputFiles is { Count: > 0 } files)
                inputDir = WriteInputFiles(files);
            int uid = lease?.Uid ?? -1;
            var psi = BuildStartInfo(request, uid, inputDir);
            var process = Spawner.Start(psi);
            var held = lease;
            var result = new SandboxProcess(process, () =>
            {
                held?.Dispose();
                if (inputDir != null) TryDeleteDirectory(inputDir);
            }, uid >= 0 ? pid => SandboxProcess.HasRealUid(pid, uid) : null);
            return result;
        }
        catch
        {
            lease?.Dispose();
            if (inputDir != null) TryDeleteDirectory(inputDir);
            throw;
        }
    }

    /// <summary>A start with all three streams redirected as UTF-8 and an empty environment: nothing of the host's environment reaches a sandbox.</summary>
    private static ProcessStartInfo RedirectedStartInfo()
    {
        var psi = new ProcessStartInfo
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
            StandardInputEncoding = new UTF8Encoding(false),
        };
        psi.Environment.Clear();
        return psi;
    }

    internal ProcessStartInfo BuildStartInfo(SandboxRequest request, int hostUid, string? inputDir)
    {
        var l = request.Limits;
        var psi = RedirectedStartInfo();
        var args = psi.ArgumentList;
        if (hostUid >= 0)
        {
            psi.FileName = _setpriv!;
            foreach (var a in new[] { $"--reuid={hostUid}", $"--regid={hostUid}", "--clear-groups", "--", _prlimit })
                args.Add(a);
        }
        else
        {
            psi.FileName = _prlimit;
        }
        foreach (var a in new[]
                 {
                     $"--cpu={l.CpuSeconds}", $"--as={l.AddressSpaceBytes}", $"--fsize={l.FileSizeBytes}",
                     $"--nproc={l.Processes}", $"--nofile={l.OpenFiles}", "--core=0", "--", _bwrap,
                     "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                     "--uid", request.UidInside.ToString(System.Globalization.CultureInfo.InvariantCulture),
                     "--gid", request.UidInside.ToString(System.Globalization.CultureInfo.InvariantCulture),
                 })
            args.Add(a);
        string tmpfsSize = l.TmpfsBytes.ToString(System.Globalization.CultureInfo.InvariantCulture);
        // Without --size a tmpfs may grow to half the host's memory; every writable one is bounded.
        void AddTmpfs(string dir)
        {
            args.Add("--size"); args.Add(tmpfsSize);
            args.Add("--tmpfs"); args.Add(dir);
        }
        foreach (var a in new[] { "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc" }) args.Add(a);
        foreach (var top in new[] { "bin", "sbin", "lib", "lib32", "lib64", "libx32" })
        {
            string host = "/" + top;
            var info = new FileInfo(host);
            if (info.LinkTarget is { } target) { args.Add("--symlink"); args.Add(target); args.Add(host); }
            else if (Directory.Exists(host)) { args.Add("--ro-bind"); args.Add(host); args.Add(host); }
        }
        foreach (var a in new[] { "--proc", "/proc", "--dev", "/dev" }) args.Add(a);
        // bubblewrap's /dev is an unbounded tmpfs that the sandbox's user owns: /dev/shm gets a
        // bounded tmpfs of its own and the rest of /dev becomes read-only (device nodes still work).
        AddTmpfs("/dev/shm");
        args.Add("--remount-ro"); args.Add("/dev");
        AddTmpfs("/tmp");
        foreach (var dir in request.WritableDirs)
            AddTmpfs(dir);
        foreach (var (host, inside) in request.ReadOnlyBinds)
        {
            args.Add("--ro-bind"); args.Add(host); args.Add(inside);
        }
        foreach (var (host, inside) in request.WritableBinds)
        {
            args.Add("--bind"); args.Add(host); args.Add(inside);
        }
        if (request.Hostname != null)
        {
            args.Add("--hostname"); args.Add(request.Hostname);
        }
        args.Add("--size"); args.Add(l.WorkDirBytes.ToString(System.Globalization.CultureInfo.InvariantCulture));
        args.Add("--tmpfs"); args.Add(SandboxRequest.WorkDir);
        if (inputDir != null)
        {
            args.Add("--ro-bind"); args.Add(inputDir); args.Add(SandboxRequest.InputDir);
        }
        args.Add("--chdir"); args.Add(SandboxRequest.WorkDir);
        AddEnvironmentAndCommand(args, request, request.UidInside == 0 ? "/root" : SandboxRequest.WorkDir);
        return psi;
    }

    /// <summary>bwrap's tail: the sandbox's whole environment (a fixed PATH, HOME, LANG, then the request's), "--" and the command.</summary>
    private static void AddEnvironmentAndCommand(System.Collections.ObjectModel.Collection<string> args, SandboxRequest request, string home)
    {
        var env = new Dictionary<string, string>
        {
            ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ["HOME"] = home,
            ["LANG"] = "C.UTF-8",
            ["PYTHONDONTWRITEBYTECODE"] = "1",
        };
        if (request.Environment != null)
            foreach (var (k, v) in request.Environment) env[k] = v;
        foreach (var (k, v) in env)
        {
            args.Add("--setenv"); args.Add(k); args.Add(v);
        }
        args.Add("--");
        foreach (var a in request.Command) args.Add(a);
    }

    private static string WriteInputFiles(IReadOnlyDictionary<string, string> files)
    {
        if (!OperatingSystem.IsLinux()) throw new PlatformNotSupportedException("the sandbox needs Linux");
        string dir = OwnedTempFolders.Create("cycleqd-sandbox-");
        // The sandbox runs as another uid: it must be able to read (not write) these files.
        File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        foreach (var (name, content) in files)
        {
            if (Path.IsPathRooted(name) || name.Split('/').Contains(".."))
                throw new ArgumentException($"input file name '{name}' must be relative and stay inside the input folder");
            string path = Path.Combine(dir, name);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, content, new UTF8Encoding(false));
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        }
        return dir;
    }

    private static void TryDeleteDirectory(string dir)
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>
    /// Copies <paramref name="stream"/> into <paramref name="sink"/> up to <paramref name="limit"/>
    /// bytes; past it the tree is killed and the rest is read and dropped. True when it was exceeded.
    /// </summary>
    internal static async Task<bool> CopyBoundedAsync(Stream stream, Stream sink, long limit, Action onExceeded)
    {
        var chunk = new byte[1 << 16];
        long written = 0;
        bool exceeded = false;
        while (true)
        {
            int n = await stream.ReadAsync(chunk).ConfigureAwait(false);
            if (n == 0) break;
            int keep = (int)Math.Max(0, Math.Min(n, limit - written));
            if (keep > 0)
            {
                await sink.WriteAsync(chunk.AsMemory(0, keep)).ConfigureAwait(false);
                written += keep;
            }
            if (keep < n && !exceeded)
            {
                exceeded = true;
                onExceeded();
            }
        }
        await sink.FlushAsync().ConfigureAwait(false);
        return exceeded;
    }

    /// <summary>
    /// Reads <paramref name="stream"/> to its end and keeps at most <paramref name="limit"/> bytes
    /// from its start and <paramref name="tailLimit"/> from its end; past the limit the tree is
    /// killed and the rest is read and dropped, so neither the writer blocks nor memory grows.
    /// </summary>
    internal static async Task<(string Text, bool Exceeded)> CaptureBoundedAsync(Stream stream, int limit, int tailLimit, Action onExceeded)
    {
        var head = new MemoryStream();
        // The bytes past the prefix go through a ring that keeps the last tailLimit of them.
        var ring = new byte[Math.Max(0, tailLimit)];
        long past = 0;
        var chunk = new byte[16384];
        while (true)
        {
            int n = await stream.ReadAsync(chunk).ConfigureAwait(false);
            if (n == 0) break;
            int keep = (int)Math.Max(0, Math.Min(n, limit - head.Length));
            if (keep > 0) head.Write(chunk, 0, keep);
            if (keep == n) continue;
            if (past == 0) onExceeded();
            if (ring.Length > 0)
                for (int k = keep; k < n; k++)
                    ring[(past + k - keep) % ring.Length] = chunk[k];
            past += n - keep;
        }
        string text = Encoding.UTF8.GetString(head.GetBuffer(), 0, (int)head.Length);
        if (past == 0) return (text, false);
        int tailCount = (int)Math.Min(past, ring.Length);
        var tail = new byte[tailCount];
        for (int k = 0; k < tailCount; k++)
            tail[k] = ring[(past - tailCount + k) % ring.Length];
        return (text + $"\n[… {past - tailCount} bytes dropped …]\n" + Encoding.UTF8.GetString(tail), true);
    }
}

/// <summary>
/// Starts processes from one thread that lives as long as the program. bubblewrap's
/// <c>--die-with-parent</c> is PR_SET_PDEATHSIG, which fires when the <em>thread</em> that forked it
/// exits; a thread-pool thread that retires after ~20 s idle would kill a sandbox still running.
/// </summary>
internal static class Spawner
{
    private static readonly System.Collections.Concurrent.BlockingCollection<(ProcessStartInfo Psi, TaskCompletionSource<Process> Done)> Queue = new();

    static Spawner()
    {
        var thread = new Thread(() =>
        {
            foreach (var (psi, done) in Queue.GetConsumingEnumerable())
            {
                try
                {
                    done.SetResult(Process.Start(psi) ?? throw new SandboxUnavailableException("could not start " + psi.FileName));
                }
                catch (Exception e)
                {
                    done.SetException(e);
                }
            }
        })
        {
            IsBackground = true,
            Name = "sandbox-spawner",
        };
        thread.Start();
    }

    public static Process Start(ProcessStartInfo psi)
    {
        var done = new TaskCompletionSource<Process>(TaskCreationOptions.RunContinuationsAsynchronously);
        Queue.Add((psi, done));
        return done.Task.GetAwaiter().GetResult();
    }
}

/// <summary>The sandbox cannot run on this machine; the message says what is missing.</summary>
public sealed class SandboxUnavailableException(string message) : Exception(message);
