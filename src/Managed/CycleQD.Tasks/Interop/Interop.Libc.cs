using System.Runtime.InteropServices;

namespace CycleQD.Tasks.Interop;

/// <summary>The few libc calls that .NET does not expose: advisory locks, file owners, atomic temp folders, accounts.</summary>
internal static partial class Libc
{
    private const string Library = "libc";

    public const int LOCK_EX = 2;
    public const int LOCK_NB = 4;
    public const int EWOULDBLOCK = 11;

    public const int AT_FDCWD = -100;
    public const int AT_SYMLINK_NOFOLLOW = 0x100;
    public const int AT_EMPTY_PATH = 0x1000;
    public const uint STATX_BASIC_STATS = 0x7ff;
    public const int S_IFMT = 0xF000;
    public const int S_IFDIR = 0x4000;
    public const int S_IFREG = 0x8000;

    /// <summary>struct statx (linux/stat.h): the same layout on every architecture.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    public struct Statx
    {
        [FieldOffset(20)] public uint Uid;
        [FieldOffset(24)] public uint Gid;
        [FieldOffset(28)] public ushort Mode;
        [FieldOffset(32)] public ulong Inode;
        [FieldOffset(128)] public uint DevMajor;
        [FieldOffset(132)] public uint DevMinor;
    }

    public const int O_RDWR = 0x2;
    public const int O_CREAT = 0x40;
    public const int O_EXCL = 0x80;
    public const int O_CLOEXEC = 0x80000;

    /// <summary>open(2) with a mode (used only with O_CREAT); the descriptor goes into a SafeFileHandle that closes it.</summary>
    [LibraryImport(Library, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int open(string path, int flags, int mode);

    [LibraryImport(Library, EntryPoint = "flock", SetLastError = true)]
    public static partial int flock(int fd, int operation);

    [LibraryImport(Library, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int statx(int dirfd, string path, int flags, uint mask, out Statx buffer);

    public const int SIGKILL = 9;

    [LibraryImport(Library, EntryPoint = "kill", SetLastError = true)]
    public static partial int kill(int pid, int signal);

    [LibraryImport(Library, EntryPoint = "geteuid")]
    public static partial uint geteuid();

    /// <summary>Replaces the trailing XXXXXX of the NUL-terminated template in place; null on failure.</summary>
    [LibraryImport(Library, EntryPoint = "mkdtemp", SetLastError = true)]
    public static unsafe partial byte* mkdtemp(byte* template);

    /// <summary>struct passwd*, or null when the account does not exist.</summary>
    [LibraryImport(Library, EntryPoint = "getpwnam", StringMarshalling = StringMarshalling.Utf8)]
    public static partial IntPtr getpwnam(string name);

    [LibraryImport(Library, EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int chown(string path, uint owner, uint group);

    /// <summary>The uid and gid of a local account (struct passwd: two pointers, then pw_uid and pw_gid), or null.</summary>
    public static (uint Uid, uint Gid)? LookUpAccount(string name)
    {
        IntPtr pw = getpwnam(name);
        if (pw == IntPtr.Zero) return null;
        return ((uint)Marshal.ReadInt32(pw, 2 * IntPtr.Size), (uint)Marshal.ReadInt32(pw, 2 * IntPtr.Size + 4));
    }
}
