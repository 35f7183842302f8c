using MySqlConnector;
using CycleQD.Tasks.Database;
using CycleQD.Tasks.Python;

namespace CycleQD.Tasks.AgentBenchDb;

/// <summary>
/// Runs one SQL text the way the reference's Container.execute does (data README §1 "Conversation
/// protocol"): a fresh session, <c>USE `db`</c>, the statement(s), the first result set rendered as
/// Python's <c>str(cursor.fetchall())</c> ("[]" when the statement returns no rows), or the error as
/// mysql.connector prints it ("1146 (42S02): Table … doesn't exist"), cut to 800 characters plus
/// "[TRUNCATED]". An error is the statement's answer only while the server is alive: after any
/// failure <paramref name="ensureServerAlive"/> runs, and a dead server ends the evaluation with
/// a <see cref="DatabaseUnavailableException"/> instead of turning every later sample into a zero.
/// </summary>
/// <param name="connectionString">The account the statements run as.</param>
/// <param name="ensureServerAlive">Throws <see cref="DatabaseUnavailableException"/> when the server is gone.</param>
internal sealed class DbSession(string connectionString, Func<CancellationToken, Task> ensureServerAlive)
{
    public const int MaxResultChars = 800;

    /// <summary>The account's connection string.</summary>
    public string ConnectionString => connectionString;

    public async Task<string> ExecuteAsync(string sql, string? database, bool truncate, CancellationToken ct)
    {
        string result;
        try
        {
            await using var conn = new MySqlConnection(connectionString);
            await conn.OpenAsync(ct).ConfigureAwait(false);
            await using var cmd = conn.CreateCommand();
            if (database != null)
            {
                cmd.CommandText = $"use `{database}`;";
                await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            }
            cmd.CommandText = sql;
            var rows = new List<IReadOnlyList<string>>();
            await using (var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false))
            {
                if (reader.FieldCount > 0)
                {
                    var typeNames = Enumerable.Range(0, reader.FieldCount).Select(reader.GetDataTypeName).ToArray();
                    while (await reader.ReadAsync(ct).ConfigureAwait(false))
                    {
                        var row = new string[reader.FieldCount];
                        for (int i = 0; i < row.Length; i++)
                            row[i] = PythonRepr.Value(reader.IsDBNull(i) ? null : reader.GetValue(i), typeNames[i]);
                        rows.Add(row);
                    }
                }
                // Later statements of a multi-statement text still run on the server; their results
                // (and errors) are not part of what the reference shows.
                try
                {
                    while (await reader.NextResultAsync(ct).ConfigureAwait(false)) { }
                }
                catch (MySqlException) { }
            }
            result = PythonRepr.Rows(rows);
        }
        catch (Exception e) when (e is MySqlException or InvalidOperationException or IOException or System.Net.Sockets.SocketException)
        {
            await ensureServerAlive(ct).ConfigureAwait(false);
            result = e is MySqlException me ? FormatError(me) : e.Message;
        }
        if (truncate && PythonStrings.Length(result) > MaxResultChars)
            result = PythonStrings.Prefix(result, MaxResultChars) + "[TRUNCATED]";
        return result;
    }

    /// <summary>Runs statements of the evaluator's own (account set-up, clean-up); an error is thrown, not returned.</summary>
    public async Task ExecuteOrThrowAsync(string sql, CancellationToken ct)
    {
        try
        {
            await using var conn = new MySqlConnection(connectionString);
            await conn.OpenAsync(ct).ConfigureAwait(false);
            await using var cmd = conn.CreateCommand();
            cmd.CommandText = sql;
            await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is MySqlException or InvalidOperationException or IOException or System.Net.Sockets.SocketException)
        {
            await ensureServerAlive(ct).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Opens a fresh (unpooled) connection and runs <c>SELECT 1</c>; throws what the driver throws when that fails.</summary>
    public static async Task PingAsync(string connectionString, CancellationToken ct)
    {
        var fresh = new MySqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString;
        await using var conn = new MySqlConnection(fresh);
        await conn.OpenAsync(ct).ConfigureAwait(false);
        await using var cmd = conn.CreateCommand();
        cmd.CommandText = "SELECT 1";
        await cmd.ExecuteScalarAsync(ct).ConfigureAwait(false);
    }

    /// <summary>mysql.connector's str(error): "errno (sqlstate): message", or "errno: message" without a state.</summary>
    public static string FormatError(MySqlException e) =>
        string.IsNullOrEmpty(e.SqlState) ? $"{e.Number}: {e.Message}" : $"{e.Number} ({e.SqlState}): {e.Message}";
}
