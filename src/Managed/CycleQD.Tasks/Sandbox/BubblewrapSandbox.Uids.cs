using System.Globalization;

namespace CycleQD.Tasks.Sandbox;

public sealed partial class BubblewrapSandbox
{
    /// <summary>
    /// Where a root caller's processes mark the host uids they hand to sandboxes: one file per uid,
    /// held under an exclusive lock while a sandbox runs as that uid (root-only: /run).
    /// </summary>
    internal const string UidLockFolder = "/run/cycleqd-sandbox-uids";

    /// <summary>
    /// Takes a host uid for one sandbox: free in this process (the pool) and not held by another
    /// process on the machine (an exclusive lock on its file in <see cref="UidLockFolder"/>, which
    /// the kernel drops when that process dies). Two processes running sandboxes under one uid would
    /// share its process limit and kill each other's sandboxes, since a tree is killed by uid.
    /// </summary>
    /// <exception cref="SandboxUnavailableException">every uid of the pool is taken, or the lock folder cannot be made.</exception>
    internal static UidLease TakeUid()
    {
        string folder = LockFolder.Value;
        for (int tries = 0; tries < UidPoolSize && FreeUids.TryDequeue(out int uid); tries++)
        {
            FileStream held;
            try
            {
                // FileShare.None takes an exclusive, non-blocking flock on Unix: it fails while another process holds it.
                held = new FileStream(Path.Combine(folder, uid.ToString(CultureInfo.InvariantCulture)), FileMode.OpenOrCreate,
                    FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException)
            {
                FreeUids.Enqueue(uid);  // another process runs a sandbox as this uid: try the next
                continue;
            }
            return new UidLease(uid, held);
        }
        throw new SandboxUnavailableException(
            $"more than {UidPoolSize} sandboxes are running at once on this machine (host uids {UidPoolBase}–{UidPoolBase + UidPoolSize - 1}, marked in {folder})");
    }

    private static readonly Lazy<string> LockFolder = new(() =>
    {
        if (!OperatingSystem.IsLinux()) throw new PlatformNotSupportedException("the sandbox needs Linux");
        try
        {
            var info = Directory.CreateDirectory(UidLockFolder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            if (info.LinkTarget != null)
                throw new SandboxUnavailableException($"{UidLockFolder} is a symbolic link; it must be a folder of root's");
            return info.FullName;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SandboxUnavailableException($"cannot make {UidLockFolder}, where sandbox runs mark the host uids they use: {e.Message}");
        }
    });

    /// <summary>A host uid held for one sandbox; disposing gives it back to the pool and the machine.</summary>
    internal sealed class UidLease(int uid, FileStream held) : IDisposable
    {
        private int _disposed;

        public int Uid { get; } = uid;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            held.Dispose();
            FreeUids.Enqueue(Uid);
        }
    }
}
