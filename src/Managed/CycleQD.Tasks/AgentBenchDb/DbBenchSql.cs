using System.Text;

namespace CycleQD.Tasks.AgentBenchDb;

/// <summary>The SQL the reference builds for a record (data README §1 "How a table is created", "Table hash").</summary>
public static class DbBenchSql
{
    /// <summary>
    /// mysql_real_escape_string: backslash-escapes NUL, \n, \r, \, ', " and Ctrl-Z. The reference
    /// applies it to column names (inside backticks) and to cells (inside single quotes).
    /// </summary>
    public static string Escape(string s)
    {
        var b = new StringBuilder(s.Length + 8);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\0': b.Append("\\0"); break;
                case '\n': b.Append("\\n"); break;
                case '\r': b.Append("\\r"); break;
                case '\\': b.Append("\\\\"); break;
                case '\'': b.Append("\\'"); break;
                case '"': b.Append("\\\""); break;
                case '\x1a': b.Append("\\Z"); break;
                default: b.Append(c); break;
            }
        }
        return b.ToString();
    }

    /// <summary>
    /// The multi-statement init script: CREATE DATABASE IF NOT EXISTS, USE, CREATE TABLE IF NOT
    /// EXISTS with every column TEXT, one multi-row INSERT of the str()'d, escaped, quoted cells,
    /// COMMIT. The table is always named after the record; <paramref name="database"/> is the
    /// record's table name in the reference layout and a per-sample name in the isolated one.
    /// </summary>
    public static string BuildInit(DbBenchRecord r, string database)
    {
        string columns = string.Join(",", r.Columns.Select(c => $"`{Escape(c)}` TEXT"));
        string names = ColumnList(r);
        string items = string.Join(",", r.Rows.Select(row => "(" + string.Join(",", row.Select(cell => $"'{Escape(cell)}'")) + ")"));
        return $"CREATE DATABASE IF NOT EXISTS `{database}`;\n    USE `{database}`;\n    CREATE TABLE IF NOT EXISTS `{r.TableName}` ({columns});\n    INSERT INTO `{r.TableName}` ({names}) VALUES {items};\n    COMMIT;\n    ";
    }

    /// <summary>The escaped, back-quoted, comma-joined column list.</summary>
    public static string ColumnList(DbBenchRecord r) => string.Join(",", r.Columns.Select(c => $"`{Escape(c)}`"));

    /// <summary>MD5 of the sorted 5-hex-digit row hashes of the table (run inside its database).</summary>
    public static string TableHash(DbBenchRecord r) =>
        $"SELECT MD5(GROUP_CONCAT(rowhash ORDER BY rowhash)) AS hash FROM (    SELECT SUBSTRING(MD5(CONCAT_WS(',', {ColumnList(r)})), 1, 5) AS rowhash     FROM `{r.TableName}`) AS sub;";
}
