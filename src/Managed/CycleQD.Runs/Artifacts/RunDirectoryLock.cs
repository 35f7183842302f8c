using System.Globalization;
using System.Text;

namespace CycleQD.Runs;

/// <summary>
/// The exclusive hold one process has on a run directory: an advisory lock (flock, LOCK_EX) on
/// <c>state/run.lock</c>, which the kernel releases when the process dies however it dies, so a
/// killed run never leaves a stale lock. Beside it, <c>state/run.lock.owner</c> names the holder
/// (pid, host, start time) for the message a second process gets.
/// </summary>
/// <remarks>
/// .NET takes the flock itself when a file is opened with <see cref="FileShare.None"/> on Unix
/// (per open file description, so a second open in the same process is refused too). The owner
/// note is a separate file because a reader of the lock file would need a shared flock, which the
/// holder's exclusive one refuses. On file systems without flock support (some NFS setups) the
/// lock cannot be taken and the run says so instead of running unprotected.
/// </remarks>
public sealed class RunDirectoryLock : IDisposable
{
    private readonly FileStream _stream;
    private readonly string _ownerPath;

    private RunDirectoryLock(FileStream stream, string ownerPath)
    {
        _stream = stream;
        _ownerPath = ownerPath;
    }

    /// <summary>The lock file of run directory <paramref name="runDirectory"/>.</summary>
    public static string LockPath(string runDirectory) => Path.Combine(runDirectory, "state", "run.lock");

    private static string OwnerPath(string runDirectory) => LockPath(runDirectory) + ".owner";

    /// <summary>Takes the lock on <paramref name="runDirectory"/> (which must exist) or throws naming the holder.</summary>
    /// <exception cref="RunDirectoryException">another process holds the run directory, or the lock cannot be taken there.</exception>
    public static RunDirectoryLock Acquire(string runDirectory)
    {
        string path = LockPath(runDirectory);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (IsSharingViolation(e))
        {
            throw new RunDirectoryException($"{runDirectory}: in use by {DescribeHolder(runDirectory)}; one process at a time may run or resume a run directory");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RunDirectoryException($"{path}: cannot take the run directory's lock ({e.Message})");
        }
        try
        {
            string owner = string.Create(CultureInfo.InvariantCulture,
                $"pid {Environment.ProcessId} on host {Environment.MachineName}, since {DateTime.UtcNow:yyyy-MM-dd HH:mm:ss} UTC\n");
            File.WriteAllBytes(OwnerPath(runDirectory), Encoding.UTF8.GetBytes(owner));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stream.Dispose();
            throw new RunDirectoryException($"{OwnerPath(runDirectory)}: cannot be written ({e.Message})");
        }
        return new RunDirectoryLock(stream, OwnerPath(runDirectory));
    }

    private static bool IsSharingViolation(IOException e) =>
        // On Linux .NET reports the refused flock with its errno, EWOULDBLOCK (11); elsewhere as
        // ERROR_SHARING_VIOLATION (32) or ERROR_LOCK_VIOLATION (33).
        e.HResult == 11 || (e.HResult & 0xFFFF) is 32 or 33;

    private static string DescribeHolder(string runDirectory)
    {
        try
        {
            string text = File.ReadAllText(OwnerPath(runDirectory)).Trim();
            // A note left by a holder that was killed names a dead pid; the lock's real holder is then unknown.
            var pid = System.Text.RegularExpressions.Regex.Match(text, @"^pid (\d+) on host (\S+),");
            bool stale = pid.Success && pid.Groups[2].Value == Environment.MachineName && !Directory.Exists("/proc/" + pid.Groups[1].Value);
            return text.Length > 0 && !stale ? "another process (" + text + ")" : "another process";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "another process";
        }
    }

    /// <summary>Removes the owner note, then releases the lock.</summary>
    public void Dispose()
    {
        try { File.Delete(_ownerPath); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        _stream.Dispose();
    }
}
