using System.Diagnostics;
using System.Text;
using MySqlConnector;

namespace CycleQD.Tasks.Database;

/// <summary>
/// A private MariaDB server in a temporary folder, reachable only through its Unix socket (no TCP
/// port, so concurrent evaluations cannot collide), hardened for model-written SQL (docs/evaluation.md,
/// "What model-written SQL can reach"): it runs as an unprivileged account, enforces grants, and
/// can neither read nor write host files. Started with the settings that make MariaDB
/// behave like the MySQL 8 server the reference evaluates against (utf8mb4 with an accent- and
/// case-insensitive collation, MySQL 8's default sql_mode). Disposing stops it and deletes its files.
/// </summary>
public sealed class MariaDbServer : IAsyncDisposable
{
    /// <summary>
    /// MySQL 8.0's default sql_mode (the reference's docker `mysql` image) less STRICT_TRANS_TABLES:
    /// MariaDB's strict mode turns a failed string-to-number conversion in an UPDATE's WHERE
    /// (<c>WHERE `No` = 16</c> over a TEXT column holding '?') into an error, where MySQL 8 only
    /// warns and updates the matching rows; the gold hash of record 278 needs MySQL's behaviour.
    /// With every column TEXT, strictness has no other effect on the benchmark's tables.
    /// </summary>
    public const string MySql8SqlMode = "ONLY_FULL_GROUP_BY,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";

    /// <summary>
    /// The closest MariaDB 10.11 collation to MySQL 8's default utf8mb4_0900_ai_ci (UCA 9.0, accent-
    /// and case-insensitive); MariaDB has no UCA 9.0 collation, UCA 5.2 differs only for characters
    /// that were added or re-weighted between the two versions.
    /// </summary>
    public const string Collation = "utf8mb4_unicode_520_ci";

    private readonly Process _process;
    private readonly string _root;

    private MariaDbServer(Process process, string root, string socket, string adminUser, string? account)
    {
        _process = process;
        _root = root;
        SocketPath = socket;
        AdminUser = adminUser;
        Account = account;
        ProcessId = process.Id;
    }

    /// <summary>The server's Unix socket.</summary>
    public string SocketPath { get; }

    /// <summary>The mariadbd process id.</summary>
    public int ProcessId { get; }

    /// <summary>
    /// The administrative account: the evaluator's own OS user name, authenticated by the kernel
    /// (unix_socket: the server asks the socket for the peer's uid), so no password exists to leak.
    /// </summary>
    public string AdminUser { get; }

    /// <summary>The unprivileged OS account the server switched to (null when the evaluator is not root and the server runs as the evaluator's user).</summary>
    public string? Account { get; }

    /// <summary>The server's <c>secure_file_priv</c> folder: empty, and not writable by the server's account.</summary>
    public string SecureFilePrivDir => Path.Combine(_root, "files");

    /// <summary>What error messages call this server.</summary>
    public string Description => $"the private MariaDB server (pid {ProcessId}, socket {SocketPath})";

    /// <summary>Connection string of the administrative account over the socket (pooled; every session is reset when returned to the pool).</summary>
    public string ConnectionString => new MySqlConnectionStringBuilder
    {
        Server = SocketPath,
        ConnectionProtocol = MySqlConnectionProtocol.UnixSocket,
        UserID = AdminUser,
        CharacterSet = "utf8mb4",
        TreatTinyAsBoolean = false,
        AllowUserVariables = true,
        ConnectionReset = true,
        DefaultCommandTimeout = 30,
    }.ConnectionString;

    /// <summary>Throws <see cref="DatabaseUnavailableException"/> naming the server and its exit status when mariadbd is no longer running.</summary>
    public void EnsureRunning()
    {
        if (!_process.HasExited) return;
        int code = _process.ExitCode;
        string how = code > 128 ? $"was killed by signal {code - 128}" : $"exited with code {code}";
        throw new DatabaseUnavailableException($"{Description} {how} during the evaluation; every later statement would fail, so the evaluation stops");
    }

    /// <summary>
    /// Initialises a data folder and starts the server with grants enforced, <c>secure_file_priv</c>
    /// on an empty read-only folder and LOCAL INFILE off; when the evaluator is root the server
    /// runs as an unprivileged account. Throws <see cref="DatabaseUnavailableException"/> naming
    /// what is missing or what the server said.
    /// </summary>
    public static async Task<MariaDbServer> StartAsync(CancellationToken cancellationToken = default)
    {
        if (!OperatingSystem.IsLinux())
            throw new DatabaseUnavailableException("the private MariaDB server needs Linux (its isolation uses Unix accounts and sockets); pass an existing server's connection string instead");
        string installDb = FindTool("mariadb-install-db") ?? FindTool("mysql_install_db")
            ?? throw new DatabaseUnavailableException("mariadb-install-db not found; install MariaDB (Debian: apt-get install mariadb-server, or ./build.sh setup) or pass an existing server's connection string");
        string server = FindTool("mariadbd") ?? FindTool("mysqld")
            ?? throw new DatabaseUnavailableException("mariadbd not found; install MariaDB (Debian: apt-get install mariadb-server, or ./build.sh setup) or pass an existing server's connection string");

        // As root, the server drops to an unprivileged account with mariadbd's own --user (the
        // setuid/setgid/initgroups every distribution's service runs it with) rather than inside
        // bubblewrap: the evaluator must reach its socket from the host and the server needs no
        // namespace tricks to do so. The distribution's dedicated `mysql` account is preferred;
        // `nobody` only where MariaDB was installed without one. Leftover servers of a killed
        // evaluation are reaped through OwnedTempFolders.
        string? account = null;
        (uint Uid, uint Gid) ids = default;
        if (Environment.IsPrivilegedProcess)
        {
            foreach (string candidate in (string[])["mysql", "nobody"])
                if (Interop.Libc.LookUpAccount(candidate) is { } found)
                {
                    account = candidate;
                    ids = found;
                    break;
                }
            if (account is null)
                throw new DatabaseUnavailableException("neither a 'mysql' nor a 'nobody' account exists; the private MariaDB server will not run as root (create a system user 'mysql')");
        }
        string adminUser = Environment.UserName;

        string root = OwnedTempFolders.Create("cycleqd-mariadb-");
        string data = Path.Combine(root, "data");
        string run = Path.Combine(root, "run");
        string tmp = Path.Combine(root, "tmp");
        string files = Path.Combine(root, "files");
        string socket = Path.Combine(run, "mysqld.sock");
        Process? process = null;
        try
        {
            // The server's account may pass through the folder (0711) into data/, run/ and tmp/,
            // which it owns; files/ (secure_file_priv) stays empty and read-only (0555) even for
            // a server that runs as the evaluator's own user.
            File.SetUnixFileMode(root, (UnixFileMode)0b111_001_001);
            foreach (string dir in (string[])[run, tmp])
            {
                Directory.CreateDirectory(dir, (UnixFileMode)0b111_000_000);
                if (account != null && Interop.Libc.chown(dir, ids.Uid, ids.Gid) != 0)
                    throw new DatabaseUnavailableException($"could not give {dir} to the '{account}' account: {System.Runtime.InteropServices.Marshal.GetLastPInvokeErrorMessage()}");
            }
            Directory.CreateDirectory(files);
            File.SetUnixFileMode(files, (UnixFileMode)0b101_101_101);
            string[] userArgs = account != null ? [$"--user={account}"] : [];

            var install = new ProcessStartInfo(installDb) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in (string[])["--no-defaults", $"--datadir={data}", "--auth-root-authentication-method=socket", $"--auth-root-socket-user={adminUser}",
                         $"--tmpdir={tmp}", "--skip-test-db", "--innodb-log-file-size=8M", "--innodb-use-native-aio=0", .. userArgs])
                install.ArgumentList.Add(a);
            using (var p = Process.Start(install)!)
            {
                var outTask = p.StandardOutput.ReadToEndAsync(cancellationToken);
                var errTask = p.StandardError.ReadToEndAsync(cancellationToken);
                await p.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
                if (p.ExitCode != 0)
                    throw new DatabaseUnavailableException($"{installDb} failed (exit {p.ExitCode}): {ErrorLines(await outTask + await errTask)}{Tail(await outTask + await errTask)}");
            }

            var start = new ProcessStartInfo(server) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in (string[])[
                         "--no-defaults", $"--datadir={data}", $"--socket={socket}", "--skip-networking",
                         $"--pid-file={Path.Combine(run, "mysqld.pid")}", $"--tmpdir={tmp}", "--skip-log-bin",
                         // Grants are enforced (no --skip-grant-tables); no statement may read or
                         // write host files: secure_file_priv names an empty folder the server
                         // cannot write, and LOAD DATA LOCAL is refused.
                         $"--secure-file-priv={files}", "--local-infile=0",
                         "--character-set-server=utf8mb4", $"--collation-server={Collation}", $"--sql-mode={MySql8SqlMode}",
                         "--innodb-log-file-size=8M", "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0",
                         "--innodb-doublewrite=0", "--max-connections=200",
                         // Several private servers at once (parallel tests, eval workers) must not exhaust
                         // the kernel's fs.aio-max-nr; this small server does not need native AIO.
                         "--innodb-use-native-aio=0", .. userArgs])
                start.ArgumentList.Add(a);
            process = Process.Start(start)!;
            OwnedTempFolders.RecordProcess(root, process.Id);
            var log = new StringBuilder();
            process.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            var instance = new MariaDbServer(process, root, socket, adminUser, account);
            var sw = Stopwatch.StartNew();
            while (true)
            {
                if (process.HasExited)
                {
                    string text;
                    lock (log) text = log.ToString();
                    throw new DatabaseUnavailableException($"{server} exited with {process.ExitCode} while starting: {Tail(text)}");
                }
                if (File.Exists(socket))
                {
                    try
                    {
                        await using var c = new MySqlConnection(instance.ConnectionString);
                        await c.OpenAsync(cancellationToken).ConfigureAwait(false);
                        return instance;
                    }
                    catch (MySqlException) { }
                }
                if (sw.Elapsed > TimeSpan.FromSeconds(60))
                    throw new DatabaseUnavailableException($"{server} did not accept connections on {socket} within 60 s");
                await Task.Delay(25, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            if (process != null)
            {
                try { process.Kill(true); } catch (InvalidOperationException) { }
                process.WaitForExit(10_000);
                process.Dispose();
            }
            try { Directory.Delete(root, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>The lines that say ERROR (the cause, which the tool's closing advice pushes out of the tail), then a separator.</summary>
    private static string ErrorLines(string text)
    {
        var lines = text.Split('\n').Where(l => l.Contains("ERROR", StringComparison.OrdinalIgnoreCase)).Take(5).ToArray();
        return lines.Length == 0 ? "" : string.Join(" | ", lines.Select(l => l.Trim())) + " … ";
    }

    private static string Tail(string s) => s.Length <= 1500 ? s.Trim() : "…" + s[^1500..].Trim();

    private static string? FindTool(string name)
    {
        foreach (var dir in new[] { "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin", "/usr/local/sbin" })
        {
            string p = Path.Combine(dir, name);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    /// <summary>Stops the server and deletes its folder. The data is thrown away, so there is no clean shutdown to wait for: SIGKILL.</summary>
    public async ValueTask DisposeAsync()
    {
        MySqlConnection.ClearAllPools();
        if (!_process.HasExited)
        {
            _process.Kill(true);
            await _process.WaitForExitAsync().ConfigureAwait(false);
        }
        _process.Dispose();
        try { Directory.Delete(_root, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>No database server can be used; the message says what is missing.</summary>
public sealed class DatabaseUnavailableException(string message) : Exception(message);
