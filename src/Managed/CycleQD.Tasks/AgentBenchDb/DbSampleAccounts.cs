using System.Security.Cryptography;
using MySqlConnector;

namespace CycleQD.Tasks.AgentBenchDb;

/// <summary>
/// One database account per sample, so that model-written SQL runs with the rights of its own
/// sample and nothing more: ALL PRIVILEGES on the sample's database (its table, views, routines
/// in it), no global privilege (no FILE, SUPER, SHUTDOWN, PROCESS, RELOAD, CREATE USER), no
/// GRANT OPTION, nothing on another database or on mysql.*. The password is random and lives
/// only in this process.
/// </summary>
/// <param name="admin">The evaluator's administrative session (creates and drops the accounts).</param>
/// <param name="host">The accounts' host part: 'localhost' on the private server (socket only), '%' on a server reached over TCP.</param>
/// <param name="ensureServerAlive">Passed on to each sample's session.</param>
/// <param name="serverName">The server as error messages name it.</param>
internal sealed class DbSampleAccounts(DbSession admin, string host, Func<CancellationToken, Task> ensureServerAlive, string serverName)
{
    private readonly List<string> _created = [];

    /// <summary>The account name of sample <paramref name="index"/>.</summary>
    public static string UserFor(int index) => $"cycleqd_s{index}";

    /// <summary>
    /// Creates (or re-creates) sample <paramref name="index"/>'s account with every privilege on
    /// <paramref name="database"/> alone, and returns a session that runs as it (unpooled: a fresh
    /// connection per statement, LOAD DATA LOCAL refused by the client as well).
    /// </summary>
    public async Task<DbSession> CreateAsync(int index, string database, CancellationToken ct)
    {
        string user = UserFor(index);
        string password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
        string account = Account(user);
        try
        {
            await admin.ExecuteOrThrowAsync(
                $"DROP USER IF EXISTS {account}; CREATE USER {account} IDENTIFIED BY '{password}'; GRANT ALL PRIVILEGES ON {GrantPattern(database)}.* TO {account};",
                ct).ConfigureAwait(false);
        }
        catch (MySqlException e)
        {
            // Without its own account a sample's SQL would run with the evaluator's rights: stop.
            throw new Database.DatabaseUnavailableException(
                $"could not create the account {account} on {serverName}: {e.Message} (the connection's user needs CREATE USER and GRANT OPTION on the samples' databases)");
        }
        lock (_created) _created.Add(user);
        var cs = new MySqlConnectionStringBuilder(admin.ConnectionString)
        {
            UserID = user,
            Password = password,
            Database = "",
            Pooling = false,
            ConnectionReset = false,
            AllowLoadLocalInfile = false,
        };
        return new DbSession(cs.ConnectionString, ensureServerAlive);
    }

    /// <summary>Drops the account of sample <paramref name="index"/>.</summary>
    public async Task DropAsync(int index, CancellationToken ct)
    {
        string user = UserFor(index);
        await admin.ExecuteOrThrowAsync($"DROP USER IF EXISTS {Account(user)};", ct).ConfigureAwait(false);
        lock (_created) _created.Remove(user);
    }

    /// <summary>Drops every account still there (after the last round, or when the evaluation fails).</summary>
    public async Task DropAllAsync(CancellationToken ct)
    {
        string[] users;
        lock (_created) users = [.. _created];
        if (users.Length == 0) return;
        await admin.ExecuteOrThrowAsync("DROP USER IF EXISTS " + string.Join(", ", users.Select(Account)) + ";", ct).ConfigureAwait(false);
        lock (_created) _created.Clear();
    }

    private string Account(string user) => $"'{user}'@'{host}'";

    /// <summary>
    /// The database name as a GRANT pattern that matches that name only: in a database-level grant
    /// '_' and '%' are wildcards (a grant on cycleqd_s1 would also cover cycleqdXs1), so they and
    /// the escape character are escaped; a backtick is doubled inside the quoted identifier.
    /// </summary>
    internal static string GrantPattern(string database) =>
        "`" + database.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("_", "\\_", StringComparison.Ordinal)
            .Replace("%", "\\%", StringComparison.Ordinal).Replace("`", "``", StringComparison.Ordinal) + "`";
}
