using System.Text.Json;

namespace CycleQD.Tasks.Mbpp;

/// <summary>One MBPP+ task (MbppPlus-v0.1.0.jsonl; data README §3 "Files").</summary>
/// <param name="TaskId">"Mbpp/N".</param>
/// <param name="Prompt">Release-form prompt: '"""\n' + description + '\n' + first test + '\n"""\n'.</param>
/// <param name="EntryPoint">Function name under test.</param>
/// <param name="CanonicalSolution">The reference solution (continues the prompt).</param>
/// <param name="Atol">Absolute tolerance (0 for most tasks).</param>
/// <param name="RawLine">The task's JSON line as stored. Its inputs use Python's json extensions (NaN, Infinity), so
/// they are read only by the Python harness, which also applies EvalPlus's deserialisation quirks.</param>
public sealed record MbppProblem(string TaskId, string Prompt, string EntryPoint, string CanonicalSolution, double Atol, string RawLine)
{
    /// <summary>Loads every task; a bad line is reported with the file and line number.</summary>
    public static IReadOnlyList<MbppProblem> Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"MBPP+ data not found: {path}", path);
        var list = new List<MbppProblem>();
        int line = 0;
        foreach (var text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            try
            {
                using var doc = JsonDocument.Parse(WithoutNonFiniteNumbers(text));
                var r = doc.RootElement;
                list.Add(new MbppProblem(r.GetProperty("task_id").GetString()!, r.GetProperty("prompt").GetString()!,
                    r.GetProperty("entry_point").GetString()!, r.GetProperty("canonical_solution").GetString()!,
                    r.GetProperty("atol").GetDouble(), text));
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new InvalidDataException($"{path}:{line}: not an MBPP+ task: {e.Message}", e);
            }
        }
        return list;
    }

    /// <summary>The JSON text with Python's NaN / Infinity / -Infinity literals (outside strings) replaced by null.</summary>
    internal static string WithoutNonFiniteNumbers(string json)
    {
        var b = new System.Text.StringBuilder(json.Length);
        bool inString = false;
        for (int i = 0; i < json.Length; i++)
        {
            char c = json[i];
            if (inString)
            {
                b.Append(c);
                if (c == '\\' && i + 1 < json.Length) b.Append(json[++i]);
                else if (c == '"') inString = false;
                continue;
            }
            if (c == '"') { inString = true; b.Append(c); continue; }
            string? token = json.AsSpan(i).StartsWith("-Infinity") ? "-Infinity" : json.AsSpan(i).StartsWith("Infinity") ? "Infinity" : json.AsSpan(i).StartsWith("NaN") ? "NaN" : null;
            if (token != null) { b.Append("null"); i += token.Length - 1; continue; }
            b.Append(c);
        }
        return b.ToString();
    }

    /// <summary>
    /// The user message (data README §3 "Problem text"): the text between the first and last """
    /// split at the first "assert"; instruction stripped with "." appended if missing, then
    /// " Your code should satisfy the following assertion:\n```python\n" + assertion + "\n```".
    /// </summary>
    public string Instruction()
    {
        int start = Prompt.IndexOf("\"\"\"", StringComparison.Ordinal);
        int end = Prompt.LastIndexOf("\"\"\"", StringComparison.Ordinal);
        if (start < 0 || end <= start) throw new InvalidDataException($"{TaskId}: prompt has no \"\"\"…\"\"\" block");
        string body = Prompt[(start + 3)..end];
        int at = body.IndexOf("assert", StringComparison.Ordinal);
        if (at < 0) throw new InvalidDataException($"{TaskId}: prompt has no assertion");
        string instruction = Python.PythonStrings.Strip(body[..at]);
        if (!instruction.EndsWith('.')) instruction += ".";
        string assertion = Python.PythonStrings.Strip(body[at..]);
        return $"{instruction} Your code should satisfy the following assertion:\n```python\n{assertion}\n```";
    }
}
