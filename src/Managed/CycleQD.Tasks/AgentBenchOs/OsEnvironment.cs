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
    private readonly SandboxProcess _process;
    private readonly SemaphoreSlim _lock = new(1, 1);

    private OsEnvironment(SandboxProcess process) => _process = process;

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
            Environment = ExecEnvironment,
            Limits = new SandboxLimits
            {
                WallClock = lifetime,
                CpuSeconds = (int)lifetime.TotalSeconds,
                AddressSpaceBytes = 4L << 30,
                FileSizeBytes = 256L << 20,
                Processes = 256,
                OutputBytes = 64 << 20,
                WorkDirBytes = 256L << 20,
            },
        });
        return new OsEnvironment(p);
    }

    private async Task<JsonDocument> CallAsync(JsonObject request, TimeSpan timeout, CancellationToken ct)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(timeout);
            await _process.Process.StandardInput.WriteLineAsync(request.ToJsonString().AsMemory(), cts.Token).ConfigureAwait(false);
            await _process.Process.StandardInput.FlushAsync(cts.Token).ConfigureAwait(false);
            string? line = await _process.Process.StandardOutput.ReadLineAsync(cts.Token).ConfigureAwait(false);
            if (line is null)
            {
                string err = await _process.Process.StandardError.ReadToEndAsync(CancellationToken.None).ConfigureAwait(false);
                throw new InvalidOperationException("the OS sandbox exited: " + (err.Length > 2000 ? err[^2000..] : err));
            }
            return JsonDocument.Parse(line);
        }
        finally
        {
            _lock.Release();
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

    /// <summary>Types <paramref name="text"/> into the shell and reads its output up to the next prompt.</summary>
    public async Task<(string Output, bool TimedOut)> SendAsync(string text, TimeSpan timeout, CancellationToken ct)
    {
        var req = new JsonObject { ["op"] = "send", ["text"] = text, ["timeout"] = timeout.TotalSeconds };
        using var doc = await CallAsync(req, timeout + TimeSpan.FromSeconds(30), ct).ConfigureAwait(false);
        return (doc.RootElement.GetProperty("output").GetString()!, doc.RootElement.GetProperty("timed_out").GetBoolean());
    }

    public async ValueTask DisposeAsync()
    {
        await _process.DisposeAsync().ConfigureAwait(false);
        _lock.Dispose();
    }
}
