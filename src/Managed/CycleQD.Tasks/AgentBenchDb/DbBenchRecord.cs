using System.Text.Json;
using CycleQD.Tasks.Python;

namespace CycleQD.Tasks.AgentBenchDb;

/// <summary>One record of data_dbbench_standard_dev.jsonl (data README §1 "Data").</summary>
/// <param name="Index">0-based line number = sample id.</param>
/// <param name="Description">The question or instruction.</param>
/// <param name="AddDescription">"The name of this table is …, and the headers of this table are …."</param>
/// <param name="Type">type[0]: INSERT, UPDATE, DELETE, other, counting, …</param>
/// <param name="Label">Gold answers (query types) or the gold SQL (INSERT/UPDATE).</param>
/// <param name="AnswerMd5">For INSERT/UPDATE/DELETE: "[('&lt;md5&gt;',)]"; null otherwise.</param>
/// <param name="TableName">table.table_name (also the database name in the reference).</param>
/// <param name="Columns">Column names, in order.</param>
/// <param name="Rows">Cells as Python's str() gives them (1.0 → "1.0"); rows may have the wrong length (records 17, 77).</param>
public sealed record DbBenchRecord(int Index, string Description, string AddDescription, string Type, IReadOnlyList<string> Label,
    string? AnswerMd5, string TableName, IReadOnlyList<string> Columns, IReadOnlyList<IReadOnlyList<string>> Rows)
{
    /// <summary>INSERT, UPDATE or DELETE: judged by the table hash.</summary>
    public bool IsModification => Type is "INSERT" or "UPDATE" or "DELETE";

    /// <summary>Loads every record; errors name the file and line.</summary>
    public static IReadOnlyList<DbBenchRecord> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"AgentBench DB data not found: {path}", path);
        var records = new List<DbBenchRecord>();
        int line = 0;
        foreach (string text in File.ReadLines(path))
        {
            if (text.Length == 0) { line++; continue; }
            try
            {
                records.Add(Parse(records.Count, text));
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new InvalidDataException($"{path}:{line + 1}: not a valid AgentBench DB record: {e.Message}", e);
            }
            line++;
        }
        return records;
    }

    private static DbBenchRecord Parse(int index, string json)
    {
        using var doc = JsonDocument.Parse(json);
        var r = doc.RootElement;
        var table = r.GetProperty("table");
        var info = table.GetProperty("table_info");
        var columns = info.GetProperty("columns").EnumerateArray().Select(c => c.GetProperty("name").GetString()!).ToList();
        var rows = info.GetProperty("rows").EnumerateArray()
            .Select(row => (IReadOnlyList<string>)row.EnumerateArray().Select(PythonRepr.JsonScalarToStr).ToList()).ToList();
        var type = r.GetProperty("type")[0].GetString()!;
        var label = r.GetProperty("label").EnumerateArray().Select(PythonRepr.JsonScalarToStr).ToList();
        string? md5 = r.TryGetProperty("answer_md5", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() : null;
        return new DbBenchRecord(index, r.GetProperty("description").GetString()!, r.GetProperty("add_description").GetString()!,
            type, label, md5, table.GetProperty("table_name").GetString()!, columns, rows);
    }

    /// <summary>The ids CycleQD evaluates (task_ids.json "task_ids").</summary>
    public static IReadOnlyList<int> LoadTaskIds(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"task id list not found: {path}", path);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.GetProperty("task_ids").EnumerateArray().Select(e => e.GetInt32()).ToList();
    }
}
