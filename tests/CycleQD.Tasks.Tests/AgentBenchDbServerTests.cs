using System.Diagnostics;
using CycleQD.Tasks.AgentBenchDb;
using CycleQD.Tasks.Database;
using CycleQD.Tasks.Scripted;
using CycleQD.Testing;
using MySqlConnector;

namespace CycleQD.Tasks.Tests;

/// <summary>The private server's own hardening, and what a dead server does to an evaluation.</summary>
public sealed class AgentBenchDbServerTests
{
    private static string Data()
    {
        string data = TestPaths.RequireSharedData();
        TestPaths.RequireSharedData("agentbench_db", "data_dbbench_standard_dev.jsonl");
        return data;
    }

    private const string Query = "Action: Operation\n```sql\nSELECT * FROM `Jiu-Jitsu Championships Results`;\n```";

    [Fact]
    public async Task PrivateServer_RunsUnprivileged_EnforcesGrants_AndHasAnEmptyReadOnlySecureFilePriv()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var server = await MariaDbServer.StartAsync(ct);

        string uidLine = File.ReadAllLines($"/proc/{server.ProcessId}/status").Single(l => l.StartsWith("Uid:", StringComparison.Ordinal));
        uint uid = uint.Parse(uidLine.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
        if (Environment.IsPrivilegedProcess)
        {
            Assert.NotEqual(0u, uid);
            Assert.Equal(Interop.Libc.LookUpAccount(server.Account!)!.Value.Uid, uid);
        }
        else Assert.Null(server.Account);

        await using (var admin = new MySqlConnection(server.ConnectionString))
        {
            await admin.OpenAsync(ct);
            await using var cmd = admin.CreateCommand();
            cmd.CommandText = "SELECT @@secure_file_priv, @@local_infile, CURRENT_USER()";
            await using var r = await cmd.ExecuteReaderAsync(ct);
            Assert.True(await r.ReadAsync(ct));
            Assert.Equal(server.SecureFilePrivDir + "/", r.GetString(0));
            Assert.Equal(0L, Convert.ToInt64(r.GetValue(1), System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal(server.AdminUser + "@localhost", r.GetString(2));
        }
        Assert.Empty(Directory.GetFileSystemEntries(server.SecureFilePrivDir));
        Assert.Equal((UnixFileMode)0b101_101_101, File.GetUnixFileMode(server.SecureFilePrivDir));

        // With --skip-grant-tables any name gets in; with grants on, an unknown account is refused.
        var stranger = new MySqlConnectionStringBuilder(server.ConnectionString) { UserID = "stranger", Password = "x", Pooling = false };
        await using var c = new MySqlConnection(stranger.ConnectionString);
        var e = await Assert.ThrowsAsync<MySqlException>(() => c.OpenAsync(ct));
        Assert.Equal(1045, e.Number);
    }

    [Fact]
    public async Task KilledPrivateServer_EndsTheEvaluationWithAnErrorNamingIt_InsteadOfZeros()
    {
        MariaDbServer? started = null;
        var bench = new AgentBenchDbBenchmark(new AgentBenchDbOptions { DataDir = Data(), Ids = [0, 1], OnServerStarted = s => started = s });
        bool killed = false;
        var responder = new ScriptedResponder(req =>
        {
            lock (bench)
            {
                if (started != null && !killed)
                {
                    using var p = Process.GetProcessById(started.ProcessId);
                    p.Kill();
                    p.WaitForExit();
                    killed = true;
                }
            }
            return Query;
        });
        var e = await Assert.ThrowsAsync<DatabaseUnavailableException>(() => bench.EvaluateAsync(responder, null, TestContext.Current.CancellationToken));
        Assert.NotNull(started);
        Assert.Contains($"the private MariaDB server (pid {started.ProcessId}, socket {started.SocketPath}) was killed by signal 9", e.Message);
    }

    [Fact]
    public async Task ShutdownOfAReusedServer_EndsTheEvaluationWithAnErrorNamingIt()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var server = await MariaDbServer.StartAsync(ct);
        var bench = new AgentBenchDbBenchmark(new AgentBenchDbOptions { DataDir = Data(), Ids = [0, 1], ConnectionString = server.ConnectionString });
        var responder = new ScriptedResponder(_ =>
        {
            if (File.Exists(server.SocketPath))
            {
                using var admin = new MySqlConnection(new MySqlConnectionStringBuilder(server.ConnectionString) { Pooling = false }.ConnectionString);
                admin.Open();
                using var cmd = admin.CreateCommand();
                cmd.CommandText = "SHUTDOWN";
                cmd.ExecuteNonQuery();
                // The server removes its socket when it has shut down; on a loaded machine that takes
                // a while, and the evaluator's next query must find it gone, so wait for it (generously).
                var waited = Stopwatch.StartNew();
                while (File.Exists(server.SocketPath) && waited.Elapsed < TimeSpan.FromSeconds(120)) Thread.Sleep(20);
            }
            return Query;
        });
        var e = await Assert.ThrowsAsync<DatabaseUnavailableException>(() => bench.EvaluateAsync(responder, null, ct));
        Assert.StartsWith($"the database server at socket {server.SocketPath} no longer answers the evaluator's own connection", e.Message);
    }

    [Fact]
    public async Task ReusedServer_RunsEachSampleUnderItsOwnAccount_AndDropsTheAccountsAfterwards()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var server = await MariaDbServer.StartAsync(ct);
        var bench = new AgentBenchDbBenchmark(new AgentBenchDbOptions { DataDir = Data(), Ids = [0, 278], ConnectionString = server.ConnectionString });
        var report = await bench.EvaluateAsync(bench.CreateGoldResponder(), null, ct);
        Assert.All(report.Samples, s => Assert.True(s.Correct, s.Reason));

        await using var admin = new MySqlConnection(server.ConnectionString);
        await admin.OpenAsync(ct);
        await using var cmd = admin.CreateCommand();
        cmd.CommandText = "SELECT COUNT(*) FROM mysql.user WHERE User LIKE 'cycleqd\\_s%'";
        Assert.Equal(0L, Convert.ToInt64(await cmd.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task ReusedServerUserWithoutCreateUser_IsRejectedBeforeAnyModelSqlRuns_NamingTheAccountAndServer()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var server = await MariaDbServer.StartAsync(ct);
        await using (var admin = new MySqlConnection(server.ConnectionString))
        {
            await admin.OpenAsync(ct);
            await using var cmd = admin.CreateCommand();
            cmd.CommandText = "CREATE USER 'weak'@'localhost' IDENTIFIED BY 'weakpw'; GRANT ALL PRIVILEGES ON `cycleqd\\_s%`.* TO 'weak'@'localhost';";
            await cmd.ExecuteNonQueryAsync(ct);
        }
        var weak = new MySqlConnectionStringBuilder(server.ConnectionString) { UserID = "weak", Password = "weakpw" };
        var bench = new AgentBenchDbBenchmark(new AgentBenchDbOptions { DataDir = Data(), Ids = [0], ConnectionString = weak.ConnectionString });
        int calls = 0;
        var e = await Assert.ThrowsAsync<DatabaseUnavailableException>(() => bench.EvaluateAsync(new ScriptedResponder(_ => { calls++; return Query; }), null, ct));
        Assert.StartsWith($"could not create the account 'cycleqd_s0'@'%' on the database server at socket {server.SocketPath}: ", e.Message);
        Assert.DoesNotContain("weakpw", e.Message);
        Assert.Equal(0, calls);
    }

    [Theory]
    [InlineData("cycleqd_s12", "`cycleqd\\_s12`")]
    [InlineData("100%_real", "`100\\%\\_real`")]
    [InlineData("a`b\\c", "`a``b\\\\c`")]
    public void GrantPattern_EscapesWildcardsAndQuotes(string database, string expected) =>
        Assert.Equal(expected, DbSampleAccounts.GrantPattern(database));
}
