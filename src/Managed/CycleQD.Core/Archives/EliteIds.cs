namespace CycleQD.Core.Archives;

/// <summary>
/// The one place that knows how an elite id names a seed expert: "expert:NAME" (NAME is the task
/// the expert was trained for); every other id is the content hash the elite store gave a child.
/// </summary>
public static class EliteIds
{
    private const string ExpertPrefix = "expert:";

    /// <summary>The id of the seed expert of task <paramref name="task"/>.</summary>
    public static string Expert(string task) => ExpertPrefix + task;

    /// <summary>Whether <paramref name="id"/> names a seed expert; <paramref name="task"/> is then its task.</summary>
    public static bool TryGetExpertTask(string id, out string task)
    {
        if (id.StartsWith(ExpertPrefix, StringComparison.Ordinal))
        {
            task = id[ExpertPrefix.Length..];
            return true;
        }
        task = "";
        return false;
    }

    /// <summary>Whether <paramref name="id"/> names a seed expert.</summary>
    public static bool IsExpert(string id) => id.StartsWith(ExpertPrefix, StringComparison.Ordinal);
}
