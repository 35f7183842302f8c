namespace CycleQD.Runs.Families;

/// <summary>Short task names for progress lines: "tinyskills/code" → "code", "agentbench_db" → "db".</summary>
public static class TaskLabels
{
    /// <summary>The short name of <paramref name="task"/>: the part after the last '/', without an "agentbench_" prefix.</summary>
    public static string Short(string task)
    {
        string s = task.Contains('/') ? task[(task.LastIndexOf('/') + 1)..] : task;
        return s.StartsWith("agentbench_", StringComparison.Ordinal) && s.Length > "agentbench_".Length ? s["agentbench_".Length..] : s;
    }

    /// <summary>Short names of <paramref name="tasks"/>; the full names when two short ones would be the same, so a label never names two tasks.</summary>
    public static IReadOnlyList<string> ShortAll(IReadOnlyList<string> tasks)
    {
        var shorts = tasks.Select(Short).ToArray();
        return shorts.Distinct(StringComparer.Ordinal).Count() == shorts.Length ? shorts : tasks.ToArray();
    }
}
