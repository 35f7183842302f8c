using System.Text.Json;
using System.Text.Json.Nodes;
using CycleQD.Tasks.Python;
using CycleQD.Tasks.Sandbox;

namespace CycleQD.Tasks.AgentBenchOs;

/// <summary>
/// One sample's stand-in for the reference's Ubuntu container: a sandbox on the pinned root file
/// system (<see cref="OsRootFilesystem"/>), root inside a user namespace with Docker's default
/// capabilities of that namespace, a supervisor that runs independent processes
/// (init and check scripts, as docker exec) and one interactive login shell on a pseudo-terminal
/// (the agent's shell, kept across rounds). Disposing it kills everything in it.
/// </summary>
internal sealed class OsEnvironment : IAsyncDisposable
{
    /// <summary>Longest answer line the supervisor may send (it bounds the outputs it reports far below this).</summary>
    private const int MaxLineChars = 8 << 20;

    private readonly SandboxProcess _process;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly Task<(string Text, bool Exceeded)> _stderr;
    private string? _broken;

    private OsEnvironment(SandboxProcess process)
    {
        _process = process;
        // Drained from the start so that nothing in the sandbox can block on a full stderr pipe.
        _stderr = BubblewrapSandbox.CaptureBoundedAsync(process.Process.StandardError.BaseStream, 16 << 10, 4 << 10, () => { });
    }

    /// <summary>
    /// Size of each writable tmpfs of the container layout (/usr, /usr/local, /etc, /root, /home,
    /// /var, /opt, /srv, /mnt, /media, /run, /tmp, /dev/shm); the work dir is <see cref="WorkDirBytes"/>.
    /// </summary>
    public const long TmpfsBytes = 64L << 20;

    /// <summary>Size of the sandbox's work dir (unused by the tasks, which live in the container folders).</summary>
    public const long WorkDirBytes = 16L << 20;

    /// <summary>
    /// The environment of the supervisor, and so of every exec'd script (init and check scripts);
    /// the agent's login shell starts from it too.
    /// </summary>
    internal static readonly IReadOnlyDictionary<string, string> ExecEnvironment = new Dictionary<string, string>
    {
        ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ["HOME"] = "/root",
        ["USER"] = "root",
        ["TERM"] = "xterm",
        ["LANG"] = "C.UTF-8",
        ["PYTHONDONTWRITEBYTECODE"] = "1",
    };

    public static OsEnvironment Start(BubblewrapSandbox sandbox, OsRootFilesystem rootfs, TimeSpan lifetime)
    {
        var p = sandbox.Start(new SandboxRequest
        {
            Command = ["python3", "-s", "/input/os_session.py"],
            InputFiles = new Dictionary<string, string> { ["os_session.py"] = EmbeddedScripts.Read("os_session.py") },
            RootFilesystem = rootfs.ForSandbox(writableBytes: 512L << 20),
            Hostname = "5f3b9c2a7d41",
            // The supervisor mounts an empty folder over its own /proc entry, then drops this for good.
            SupervisorCapabilities = ["CAP_SYS_ADMIN"],
            Environment = ExecEnvironment,
            Limits = new SandboxLimits
            {
                WallClock = lifetime,
                CpuSeconds = (int)lifetime.TotalSeconds,
                AddressSpaceBytes = 4L << 30,
                FileSizeBytes = 256L << 20,
                Processes = 256,
                OutputBytes = 64 << 20,
                WorkDirBytes = WorkDirBytes,
                TmpfsBytes = TmpfsBytes,
            },
        });
        return new OsEnvironment(p);
    }

    /// <summary>
    /// One request and its answer line. A supervisor that does not answer in time, exits (the
    /// agent may kill every process it can see) or answers garbage leaves the environment broken:
    /// it is killed and every later call fails with <see cref="OsEnvironmentException"/>. Only the
    /// caller's own cancellation ends in <see cref="OperationCanceledException"/>.
    /// </summary>
    private async Task<JsonDocument> CallAsync(JsonObject request, TimeSpan timeout, CancellationToken ct)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (_broken != null) throw new OsEnvironmentException(_broken);
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(timeout);
            string? line;
            try
            {
                await _process.Process.StandardInput.WriteLineAsync(request.ToJsonString().AsMemory(), cts.Token).ConfigureAwait(false);
                await _process.Process.StandardInput.FlushAsync(cts.Token).ConfigureAwait(false);
                line = await ReadBoundedLineAsync(_process.Process.StandardOutput, MaxLineChars, cts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw Break($"the sandbox did not answer within {timeout.TotalSeconds:0} s");
            }
            catch (IOException e)
            {
                throw Break("the sandbox's supervisor is gone (" + e.Message + ")");
            }
            if (line is null)
            {
                _process.KillTree();
                var (err, _) = await _stderr.ConfigureAwait(false);
                throw Break("the sandbox's supervisor exited" + (err.Length > 0 ? ": " + (err.Length > 2000 ? err[^2000..] : err) : ""));
            }
            try
            {
                return JsonDocument.Parse(line);
            }
            catch (JsonException e)
            {
                throw Break("the sandbox answered garbage: " + e.Message);
            }
        }
        finally
        {
            _lock.Release();
        }
    }

    private OsEnvironmentException Break(string reason)
    {
        _broken = reason;
        _process.KillTree();
        return new OsEnvironmentException(reason);
    }

    /// <summary>The next line (without its end), or null at the end of the stream; longer than <paramref name="maxChars"/> is an error.</summary>
    private static async Task<string?> ReadBoundedLineAsync(StreamReader reader, int maxChars, CancellationToken ct)
    {
        var sb = new System.Text.StringBuilder();
        var one = new char[1];
        while (true)
        {
            int n = await reader.ReadAsync(one.AsMemory(), ct).ConfigureAwait(false);
            if (n == 0) return sb.Length > 0 ? sb.ToString() : null;
            if (one[0] == '\n') return sb.ToString();
            if (sb.Length >= maxChars) throw new IOException($"an answer line is longer than {maxChars} characters");
            sb.Append(one[0]);
        }
    }

    /// <summary>Runs a script as an independent process (docker exec); returns its exit code and stdout+stderr.</summary>
    public async Task<(int ExitCode, string Output)> ExecAsync(OsScript script, IReadOnlyList<string> parameters, CancellationToken ct)
    {
        var req = new JsonObject
        {
            ["op"] = "exec",
            ["language"] = script.Language,
            ["script"] = script.Script,
            ["params"] = new JsonArray(parameters.Select(p => (JsonNode)p).ToArray()),
            ["timeout"] = 60,
        };
        using var doc = await CallAsync(req, TimeSpan.FromSeconds(90), ct).ConfigureAwait(false);
        return (doc.RootElement.GetProperty("exit_code").GetInt32(), doc.RootElement.GetProperty("output").GetString()!);
    }

    /// <summary>Starts the agent's login shell.</summary>
    public async Task StartSessionAsync(CancellationToken ct)
    {
        using var _ = await CallAsync(new JsonObject { ["op"] = "session" }, TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Types <paramref name="text"/> into the shell and reads its output up to the next prompt, or
    /// until <paramref name="timeout"/> of silence or <paramref name="limit"/> in all (a shell that
    /// keeps printing); the output is bounded by the supervisor.
    /// </summary>
    public async Task<(string Output, bool TimedOut)> SendAsync(string text, TimeSpan timeout, TimeSpan limit, CancellationToken ct)
    {
        var req = new JsonObject { ["op"] = "send", ["text"] = text, ["timeout"] = timeout.TotalSeconds, ["limit"] = limit.TotalSeconds };
        using var doc = await CallAsync(req, limit + TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
        return (doc.RootElement.GetProperty("output").GetString()!, doc.RootElement.GetProperty("timed_out").GetBoolean());
    }

    public async ValueTask DisposeAsync()
    {
        await _process.DisposeAsync().ConfigureAwait(false);
        await _stderr.ConfigureAwait(false);
        _lock.Dispose();
    }
}

/// <summary>A sample's environment stopped working (its supervisor is gone or stuck); the sample fails with this reason.</summary>
internal sealed class OsEnvironmentException(string message) : Exception(message);
