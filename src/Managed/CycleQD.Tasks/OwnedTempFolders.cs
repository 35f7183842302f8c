using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using CycleQD.Tasks.Interop;
using Microsoft.Win32.SafeHandles;

namespace CycleQD.Tasks;

/// <summary>
/// Temporary folders that belong to the process that made them, so that the leftovers of a killed
/// evaluation can be told apart from the folders of one still running.
/// </summary>
/// <remarks>
/// Each process holds one lock file, <c>cycleqd-owner-&lt;token&gt;.lock</c> in the temp folder,
/// under <c>flock</c> for as long as it lives: the kernel releases the lock when the process dies,
/// however it dies (SIGKILL included), which no exit handler or pid file can promise. Every folder
/// the process creates is named <c>&lt;prefix&gt;&lt;token&gt;.XXXXXX</c>. The first folder a
/// process creates in a temp folder reaps the folders there whose owner's lock is free: the
/// processes recorded for a folder (<see cref="RecordProcess"/>) are killed, but only when their
/// command line still names the folder (a pid can be reused by an unrelated process), and the
/// folder is deleted. Only folders owned by the reaping user are touched.
/// </remarks>
public static partial class OwnedTempFolders
{
    private const string OwnerLockPrefix = "cycleqd-owner-";
    private const string OwnerLockSuffix = ".lock";
    private const string ProcessesFileName = "owned-processes";

    private static readonly Lock Gate = new();
    private static readonly Dictionary<string, OwnerLock> Owners = new(StringComparer.Ordinal);
    private static readonly HashSet<string> ReapedRoots = new(StringComparer.Ordinal);
    private static bool _exitHandlerInstalled;

    [GeneratedRegex("^cycleqd-[a-z0-9-]*-$", RegexOptions.CultureInvariant)]
    private static partial Regex PrefixPattern();

    [GeneratedRegex("^cycleqd-[a-z0-9-]*-(?<token>[0-9a-f]{12})\\.[A-Za-z0-9]{6}$", RegexOptions.CultureInvariant)]
    private static partial Regex FolderPattern();

    [GeneratedRegex("^cycleqd-owner-(?<token>[0-9a-f]{12})\\.lock$", RegexOptions.CultureInvariant)]
    private static partial Regex LockPattern();

    /// <summary>
    /// Creates a new folder (mode 0700) under the temp folder (<see cref="Path.GetTempPath"/>) named
    /// <paramref name="prefix"/> + this process's owner token + "." + six random characters, and
    /// returns its full path. The first call in a process reaps stale folders first.
    /// </summary>
    /// <param name="prefix">"cycleqd-", then lowercase letters, digits and dashes, ending in "-" (e.g. "cycleqd-mariadb-").</param>
    /// <exception cref="ArgumentException">The prefix does not have that form.</exception>
    /// <exception cref="IOException">The folder or the owner lock could not be created; the message names the path.</exception>
    public static string Create(string prefix) => Create(prefix, Path.GetTempPath());

    /// <summary>
    /// Remembers that <paramref name="pid"/> was started for <paramref name="folder"/> (a folder from
    /// <see cref="Create(string)"/>), so that a reaper kills it if this process dies first. The
    /// process's command line must name the folder (or a path inside it) for the reaper to act.
    /// </summary>
    public static void RecordProcess(string folder, int pid)
    {
        if (!FolderPattern().IsMatch(Path.GetFileName(Path.TrimEndingDirectorySeparator(folder))))
            throw new ArgumentException($"'{folder}' is not a folder made by {nameof(OwnedTempFolders)}.{nameof(Create)}", nameof(folder));
        File.AppendAllText(Path.Combine(folder, ProcessesFileName), pid.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n");
    }

    /// <summary>
    /// Deletes the folders in the temp folder whose owning process has died, after killing the
    /// processes recorded for them, and the owners' free lock files. Returns the deleted folders.
    /// </summary>
    public static IReadOnlyList<string> ReapStale() => ReapStale(Path.GetTempPath());

    internal static string Create(string prefix, string root)
    {
        if (!PrefixPattern().IsMatch(prefix))
            throw new ArgumentException($"temporary folder prefix '{prefix}' must be 'cycleqd-', then lowercase letters, digits and dashes, ending in '-'", nameof(prefix));
        root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root));
        OwnerLock owner;
        lock (Gate)
        {
            if (ReapedRoots.Add(root)) ReapStale(root);
            owner = OwnerIn(root);
        }
        return MakeFolder(Path.Combine(root, prefix + owner.Token + ".XXXXXX"));
    }

    internal static IReadOnlyList<string> ReapStale(string root)
    {
        root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root));
        uint euid = Libc.geteuid();
        var foldersByToken = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var tokens = new HashSet<string>(StringComparer.Ordinal);
        foreach (string path in Directory.EnumerateFileSystemEntries(root, "cycleqd-*"))
        {
            string name = Path.GetFileName(path);
            var m = LockPattern().Match(name);
            if (m.Success)
            {
                tokens.Add(m.Groups["token"].Value);
                continue;
            }
            m = FolderPattern().Match(name);
            if (!m.Success) continue;
            string token = m.Groups["token"].Value;
            tokens.Add(token);
            if (!foldersByToken.TryGetValue(token, out var list)) foldersByToken[token] = list = [];
            list.Add(path);
        }
        HashSet<string> own;
        lock (Gate) own = Owners.Values.Where(o => o.Root == root).Select(o => o.Token).ToHashSet(StringComparer.Ordinal);

        var reaped = new List<string>();
        foreach (string token in tokens)
        {
            if (own.Contains(token)) continue;
            string lockPath = Path.Combine(root, OwnerLockPrefix + token + OwnerLockSuffix);
            using var deadOwnersLock = TryLockDeadOwner(lockPath, euid, out bool alive);
            if (alive) continue;
            foreach (string folder in foldersByToken.GetValueOrDefault(token) ?? [])
            {
                if (!IsOwnedBy(folder, euid, Libc.S_IFDIR)) continue;
                KillRecordedProcesses(folder);
                try
                {
                    Directory.Delete(folder, recursive: true);
                    reaped.Add(folder);
                }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
            // Unlinked while still held, so no other reaper can take a lock on a file that is gone.
            if (deadOwnersLock != null)
                try { File.Delete(lockPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        return reaped;
    }

    /// <summary>
    /// The dead owner's lock (held until disposed), or null when there is no lock file or it is
    /// not ours to take; <paramref name="alive"/> says whether a live process holds it.
    /// </summary>
    private static SafeFileHandle? TryLockDeadOwner(string lockPath, uint euid, out bool alive)
    {
        alive = false;
        if (!IsOwnedBy(lockPath, euid, Libc.S_IFREG))
        {
            // Another user's lock: treat its folders as alive (they are not ours to delete anyway).
            alive = File.Exists(lockPath);
            return null;
        }
        int fd = Libc.open(lockPath, Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (fd < 0) return null;
        var handle = new SafeFileHandle((IntPtr)fd, ownsHandle: true);
        if (Libc.flock(fd, Libc.LOCK_EX | Libc.LOCK_NB) != 0)
        {
            alive = Marshal.GetLastPInvokeError() == Libc.EWOULDBLOCK;
            handle.Dispose();
            return null;
        }
        return handle;
    }

    private static OwnerLock OwnerIn(string root)
    {
        if (Owners.TryGetValue(root, out var existing)) return existing;
        for (int attempt = 0; attempt < 8; attempt++)
        {
            string token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));
            string lockPath = Path.Combine(root, OwnerLockPrefix + token + OwnerLockSuffix);
            // O_EXCL: never adopt (or follow a link to) a file someone else put there; O_CLOEXEC: a
            // child process (mariadbd) must not inherit the lock, or it would keep the folder "alive".
            int fd = Libc.open(lockPath, Libc.O_RDWR | Libc.O_CREAT | Libc.O_EXCL | Libc.O_CLOEXEC, 0b110_000_000);
            if (fd < 0)
                throw new IOException($"could not create the owner lock {lockPath}: {Marshal.GetLastPInvokeErrorMessage()}");
            var handle = new SafeFileHandle((IntPtr)fd, ownsHandle: true);
            // A reaper that opened the new file before it was locked takes it for a dead owner's
            // and unlinks it: then the lock would guard nothing. Keep it only if the path still
            // names the locked file.
            if (Libc.flock(fd, Libc.LOCK_EX | Libc.LOCK_NB) == 0 && SameFile(fd, lockPath))
            {
                var owner = new OwnerLock(root, token, lockPath, handle);
                Owners[root] = owner;
                if (!_exitHandlerInstalled)
                {
                    AppDomain.CurrentDomain.ProcessExit += (_, _) => ReleaseOnExit();
                    _exitHandlerInstalled = true;
                }
                return owner;
            }
            handle.Dispose();
        }
        throw new IOException($"could not take an owner lock in {root}: another process kept removing it");
    }

    /// <summary>A clean exit leaves no lock file behind when its folders are gone (a later reaper removes the rest).</summary>
    private static void ReleaseOnExit()
    {
        lock (Gate)
        {
            foreach (var owner in Owners.Values)
            {
                bool folderLeft = false;
                try { folderLeft = Directory.EnumerateDirectories(owner.Root, "cycleqd-*" + owner.Token + ".*").Any(); }
                catch (IOException) { }
                if (!folderLeft)
                    try { File.Delete(owner.LockPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
                owner.Handle.Dispose();
            }
            Owners.Clear();
        }
    }

    private static unsafe string MakeFolder(string template)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(template + "\0");
        fixed (byte* p = bytes)
        {
            if (Libc.mkdtemp(p) == null)
                throw new IOException($"could not create a temporary folder {template}: {Marshal.GetLastPInvokeErrorMessage()}");
        }
        return Encoding.UTF8.GetString(bytes, 0, bytes.Length - 1);
    }

    private static bool SameFile(int fd, string path)
    {
        if (Libc.statx(fd, "", Libc.AT_EMPTY_PATH, Libc.STATX_BASIC_STATS, out var held) != 0) return false;
        if (Libc.statx(Libc.AT_FDCWD, path, Libc.AT_SYMLINK_NOFOLLOW, Libc.STATX_BASIC_STATS, out var named) != 0) return false;
        return held.Inode == named.Inode && held.DevMajor == named.DevMajor && held.DevMinor == named.DevMinor;
    }

    /// <summary>True when <paramref name="path"/> itself (not a link's target) has the given type and belongs to <paramref name="uid"/>.</summary>
    private static bool IsOwnedBy(string path, uint uid, int type) =>
        Libc.statx(Libc.AT_FDCWD, path, Libc.AT_SYMLINK_NOFOLLOW, Libc.STATX_BASIC_STATS, out var st) == 0
        && (st.Mode & Libc.S_IFMT) == type && st.Uid == uid;

    private static void KillRecordedProcesses(string folder)
    {
        string record = Path.Combine(folder, ProcessesFileName);
        if (!IsOwnedBy(record, Libc.geteuid(), Libc.S_IFREG)) return;
        foreach (string line in File.ReadAllLines(record))
        {
            if (!int.TryParse(line, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid) || pid <= 1) continue;
            if (!CommandLineNames(pid, folder)) continue;
            try
            {
                using var process = Process.GetProcessById(pid);
                process.Kill();
            }
            catch (ArgumentException) { } // exited meanwhile
            catch (InvalidOperationException) { }
            catch (System.ComponentModel.Win32Exception) { }
            // Not our child, so there is no wait(2): poll until it is gone or a zombie (its files are closed then).
            var waited = Stopwatch.StartNew();
            while (IsRunning(pid) && waited.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(10);
        }
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            int close = stat.LastIndexOf(')');
            return close > 0 && close + 2 < stat.Length && stat[close + 2] != 'Z';
        }
        catch (IOException) { return false; }
    }

    /// <summary>Whether process <paramref name="pid"/>'s arguments name <paramref name="folder"/> or a path inside it.</summary>
    internal static bool CommandLineNames(int pid, string folder)
    {
        string text;
        try { text = File.ReadAllText($"/proc/{pid}/cmdline"); }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
        string inside = folder + "/";
        return text.Split('\0').Any(arg => arg == folder || arg.Contains(inside, StringComparison.Ordinal));
    }

    private sealed record OwnerLock(string Root, string Token, string LockPath, SafeFileHandle Handle);
}
