namespace CycleQD.Tasks.Tests;

/// <summary>The host's live processes, found by their command lines (/proc/PID/cmdline).</summary>
internal static class ProcessScan
{
    /// <summary>The pids (not this test process) whose command line contains <paramref name="marker"/>.</summary>
    public static List<int> WithArgument(string marker)
    {
        var found = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid) || pid == Environment.ProcessId) continue;
            if (CommandLine(pid).Contains(marker, StringComparison.Ordinal)) found.Add(pid);
        }
        return found;
    }

    /// <summary>The command line with spaces for its NULs; empty for a zombie or a process that is gone.</summary>
    public static string CommandLine(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' '); }
        catch (IOException) { return ""; }
        catch (UnauthorizedAccessException) { return ""; }
    }
}
