using CycleQD.Core.Evaluation;
using CycleQD.Tasks.AgentBenchDb;
using CycleQD.Tasks.Database;
using CycleQD.Tasks.Scripted;
using CycleQD.Testing;
using MySqlConnector;

namespace CycleQD.Tasks.Tests;

/// <summary>
/// One evaluation in which each of several samples sends one hostile statement in round 0 (as
/// its model would) while sample 0 answers its query and sample 278 runs its gold UPDATE in round
/// 0 and is hashed in round 1, after every attack.
/// </summary>
public sealed class HostileSqlEvaluation : IAsyncLifetime
{
    public const int Victim = 278;
    public const int Normal = 0;

    /// <summary>A world-readable host file with a marker no statement may bring back.</summary>
    public string SecretFile { get; } = Path.Combine("/tmp", $"cycleqd-secret-{Guid.NewGuid():N}.txt");

    /// <summary>Where INTO OUTFILE tries to write (world-writable /tmp: only privileges can stop it).</summary>
    public string OutFile { get; } = Path.Combine("/tmp", $"cycleqd-outfile-{Guid.NewGuid():N}.txt");

    public string Marker { get; } = "cycleqd-marker-" + Guid.NewGuid().ToString("N");

    public Dictionary<int, string> Attacks { get; } = [];

    public EvaluationReport Report { get; private set; } = null!;

    public DbBenchRecord VictimRecord { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        string data = TestPaths.RequireSharedData();
        TestPaths.RequireSharedData("agentbench_db", "data_dbbench_standard_dev.jsonl");
        await File.WriteAllTextAsync(SecretFile, Marker + "\n");
        File.SetUnixFileMode(SecretFile, (UnixFileMode)0b110_100_100);

        var probe = new AgentBenchDbBenchmark(new AgentBenchDbOptions { DataDir = data, Ids = [Victim] });
        VictimRecord = probe.SelectedRecords()[0];
        string victimTable = $"`cycleqd_s{Victim}`.`{VictimRecord.TableName}`";
        string[] attacks =
        [
            $"SELECT 'pwned' INTO OUTFILE '{OutFile}'",
            $"LOAD DATA INFILE '{SecretFile}' INTO TABLE `Tournament Results`",
            $"LOAD DATA LOCAL INFILE '{SecretFile}' INTO TABLE `Tournament Results`",
            $"SELECT LOAD_FILE('/etc/passwd'), LOAD_FILE('{SecretFile}')",
            $"DROP DATABASE `cycleqd_s{Victim}`",
            $"SELECT * FROM {victimTable}",
            "SHUTDOWN",
            "GRANT ALL PRIVILEGES ON *.* TO CURRENT_USER",
            "SELECT User, Host FROM mysql.user",
            "SHOW GRANTS",
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA",
            "CREATE DATABASE `cycleqdXs5`",
        ];
        for (int i = 0; i < attacks.Length; i++) Attacks[i + 1] = attacks[i];

        int[] ids = [Victim, Normal, .. Attacks.Keys];
        var bench = new AgentBenchDbBenchmark(new AgentBenchDbOptions { DataDir = data, Ids = ids });
        var gold = bench.CreateGoldResponder();
        var byOpening = bench.SelectedRecords().ToDictionary(r => r.Description + "\n" + r.AddDescription);
        var responder = new ScriptedResponder(req =>
        {
            var r = byOpening.Single(kv => req.Prompt.Contains(kv.Key, StringComparison.Ordinal)).Value;
            if (!Attacks.TryGetValue(r.Index, out string? sql)) return gold.GenerateAsync([req]).GetAwaiter().GetResult()[0].Text;
            bool first = req.Prompt.Split("<|start_header_id|>assistant<|end_header_id|>").Length - 1 == 2;
            return first ? "Action: Operation\n```sql\n" + sql + "\n```" : "Action: Answer\nFinal Answer: []";
        });
        Report = await bench.EvaluateAsync(responder, null, TestContext.Current.CancellationToken);
    }

    /// <summary>What the server answered to sample <paramref name="id"/>'s statement.</summary>
    public string AnswerTo(int id) =>
        Report.Samples.Single(s => s.Id == id.ToString(System.Globalization.CultureInfo.InvariantCulture)).Transcript[1];

    public ValueTask DisposeAsync()
    {
        File.Delete(SecretFile);
        File.Delete(OutFile);
        return ValueTask.CompletedTask;
    }
}

public sealed class AgentBenchDbHostileSqlTests(HostileSqlEvaluation run) : IClassFixture<HostileSqlEvaluation>
{
    private string Answer(string attackStart) => run.AnswerTo(run.Attacks.Single(kv => kv.Value.StartsWith(attackStart, StringComparison.Ordinal)).Key);

    [Fact]
    public void NormalSamples_StillScore_AndTheVictimsTableHashIsIntact()
    {
        Assert.True(run.Report.Samples.Single(s => s.Id == "0").Correct);
        var victim = run.Report.Samples.Single(s => s.Id == HostileSqlEvaluation.Victim.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(victim.Correct, victim.Reason);
        Assert.Equal(run.Attacks.Count + 2, run.Report.Samples.Count);
    }

    [Fact]
    public void IntoOutfile_IsDenied_AndNoHostFileAppears()
    {
        Assert.StartsWith("user: 1227 (42000): Access denied; you need (at least one of) the FILE privilege(s)", Answer("SELECT 'pwned' INTO OUTFILE"));
        Assert.False(File.Exists(run.OutFile));
    }

    [Fact]
    public void LoadDataInfile_IsDenied_AndTheFileIsNotRead()
    {
        Assert.StartsWith("user: 1045 (28000): Access denied for user 'cycleqd_s", Answer("LOAD DATA INFILE"));
        Assert.DoesNotContain(run.Report.Samples, s => s.Transcript.Any(t => t.Contains(run.Marker, StringComparison.Ordinal)));
    }

    [Fact]
    public void LoadDataLocalInfile_IsRefused()
    {
        Assert.Equal("user: 4166 (HY000): The used command is not allowed because the MariaDB server or client has disabled the local infile capability",
            Answer("LOAD DATA LOCAL INFILE"));
    }

    [Fact]
    public void LoadFile_ReturnsNull_ForEtcPasswdAndForATestFile()
    {
        Assert.Equal("user: [(None, None)]", Answer("SELECT LOAD_FILE"));
    }

    [Fact]
    public void AnotherSamplesDatabase_CanNeitherBeDroppedNorRead()
    {
        Assert.Equal($"user: 1044 (42000): Access denied for user 'cycleqd_s5'@'localhost' to database 'cycleqd_s{HostileSqlEvaluation.Victim}'", Answer("DROP DATABASE"));
        Assert.StartsWith("user: 1142 (42000): SELECT command denied to user 'cycleqd_s6'@'localhost' for table", Answer("SELECT * FROM `cycleqd_s"));
    }

    [Fact]
    public void Shutdown_IsDenied()
    {
        Assert.StartsWith("user: 1227 (42000): Access denied; you need (at least one of) the SHUTDOWN privilege(s)", Answer("SHUTDOWN"));
    }

    [Fact]
    public void Grant_IsDenied_AndTheAccountHoldsOnlyItsOwnDatabase()
    {
        Assert.Contains("Access denied", Answer("GRANT ALL"));
        string grants = Answer("SHOW GRANTS");
        Assert.Equal("user: [(\"GRANT USAGE ON *.* TO `cycleqd_s10`@`localhost` IDENTIFIED BY PASSWORD '", grants[..grants.IndexOf('\'', StringComparison.Ordinal)] + "'");
        Assert.Contains("('GRANT ALL PRIVILEGES ON `cycleqd\\\\_s10`.* TO `cycleqd_s10`@`localhost`',)", grants);
        Assert.Equal(2, grants.Split("GRANT ").Length - 1);
        Assert.DoesNotContain("WITH GRANT OPTION", grants);
    }

    [Fact]
    public void MysqlSchema_AndOtherDatabases_AreInvisible()
    {
        Assert.StartsWith("user: 1142 (42000): SELECT command denied to user 'cycleqd_s9'@'localhost' for table", Answer("SELECT User, Host FROM mysql.user"));
        Assert.Equal("user: [('information_schema',), ('cycleqd_s11',)]", Answer("SELECT SCHEMA_NAME"));
    }

    [Fact]
    public void GrantUnderscore_IsNotAWildcard()
    {
        Assert.StartsWith("user: 1044 (42000): Access denied for user 'cycleqd_s12'@'localhost' to database 'cycleqdXs5'", Answer("CREATE DATABASE"));
    }
}
