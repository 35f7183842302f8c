using MySqlConnector;
using CycleQD.Tasks.Python;

namespace CycleQD.Tasks.AgentBenchDb;

/// <summary>
/// Runs one SQL text the way the reference's Container.execute does (data README §1 "Conversation
/// protocol"): a fresh session, <c>USE `db`</c>, the statement(s), the first result set rendered as
/// Python's <c>str(cursor.fetchall())</c> ("[]" when the statement returns no rows), or the error as
/// mysql.connector prints it ("1146 (42S02): Table … doesn't exist"), cut to 800 characters plus
/// "[TRUNCATED]".
/// </summary>
internal sealed class DbSession(string connectionString)
{
    public const int MaxResultChars = 800;

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
        catch (MySqlException e)
        {
            result = FormatError(e);
        }
        catch (InvalidOperationException e)
        {
            result = e.Message;
        }
        if (truncate && PythonStrings.Length(result) > MaxResultChars)
            result = PythonStrings.Prefix(result, MaxResultChars) + "[TRUNCATED]";
        return result;
    }

    /// <summary>mysql.connector's str(error): "errno (sqlstate): message", or "errno: message" without a state.</summary>
    public static string FormatError(MySqlException e) =>
        string.IsNullOrEmpty(e.SqlState) ? $"{e.Number}: {e.Message}" : $"{e.Number} ({e.SqlState}): {e.Message}";
}
