using System.Diagnostics;
using System.Text;
using MySqlConnector;

namespace CycleQD.Tasks.Database;

/// <summary>
/// A private MariaDB server in a temporary folder, reachable only through its Unix socket (no TCP
/// port, so concurrent evaluations cannot collide). Started with the settings that make MariaDB
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

    private MariaDbServer(Process process, string root, string socket)
    {
        _process = process;
        _root = root;
        SocketPath = socket;
    }

    /// <summary>The server's Unix socket.</summary>
    public string SocketPath { get; }

    /// <summary>Connection string for root over the socket (pooled; every session is reset when returned to the pool).</summary>
    public string ConnectionString => new MySqlConnectionStringBuilder
    {
        Server = SocketPath,
        ConnectionProtocol = MySqlConnectionProtocol.UnixSocket,
        UserID = "root",
        CharacterSet = "utf8mb4",
        TreatTinyAsBoolean = false,
        AllowUserVariables = true,
        ConnectionReset = true,
        DefaultCommandTimeout = 30,
    }.ConnectionString;

    /// <summary>Initialises a data folder and starts the server; throws <see cref="DatabaseUnavailableException"/> naming what is missing or what the server said.</summary>
    public static async Task<MariaDbServer> StartAsync(CancellationToken cancellationToken = default)
    {
        string installDb = FindTool("mariadb-install-db") ?? FindTool("mysql_install_db")
            ?? throw new DatabaseUnavailableException("mariadb-install-db not found; install MariaDB (Debian: apt-get install mariadb-server, or ./build.sh setup) or pass an existing server's connection string");
        string server = FindTool("mariadbd") ?? FindTool("mysqld")
            ?? throw new DatabaseUnavailableException("mariadbd not found; install MariaDB (Debian: apt-get install mariadb-server, or ./build.sh setup) or pass an existing server's connection string");
        string root = Directory.CreateTempSubdirectory("cycleqd-mariadb-").FullName;
        string data = Path.Combine(root, "data");
        string socket = Path.Combine(root, "mysqld.sock");
        var userArgs = Environment.IsPrivilegedProcess ? new[] { "--user=root" } : [];
        try
        {
            var install = new ProcessStartInfo(installDb) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in (string[])["--no-defaults", $"--datadir={data}", "--auth-root-authentication-method=normal", "--skip-test-db", "--innodb-log-file-size=8M", "--innodb-use-native-aio=0", .. userArgs])
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
                         $"--pid-file={Path.Combine(root, "mysqld.pid")}", "--skip-grant-tables", "--skip-log-bin",
                         "--character-set-server=utf8mb4", $"--collation-server={Collation}", $"--sql-mode={MySql8SqlMode}",
                         "--innodb-log-file-size=8M", "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0",
                         "--innodb-doublewrite=0", "--max-connections=200",
                         // Several private servers at once (parallel tests, eval workers) must not exhaust
                         // the kernel's fs.aio-max-nr; this small server does not need native AIO.
                         "--innodb-use-native-aio=0", .. userArgs])
                start.ArgumentList.Add(a);
            var process = Process.Start(start)!;
            var log = new StringBuilder();
            process.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            var instance = new MariaDbServer(process, root, socket);
            var sw = Stopwatch.StartNew();
            while (true)
            {
                if (process.HasExited)
                {
                    string text;
                    lock (log) text = log.ToString();
                    await instance.DisposeAsync().ConfigureAwait(false);
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
                {
                    await instance.DisposeAsync().ConfigureAwait(false);
                    throw new DatabaseUnavailableException($"{server} did not accept connections on {socket} within 60 s");
                }
                await Task.Delay(25, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            if (Directory.Exists(root) && !File.Exists(Path.Combine(root, "mysqld.pid")))
                try { Directory.Delete(root, true); } catch (IOException) { }
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
