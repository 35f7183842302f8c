using System.Diagnostics;
using CycleQD.Testing;

namespace CycleQD.Tasks.Tests;

public sealed class OwnedTempFoldersTests
{
    /// <summary>Starts the test executable in child mode and reads its first <paramref name="lines"/> lines.</summary>
    private static (Process Child, string[] Lines) StartChild(string mode, int lines, string? tmpDir = null)
    {
        string host = Environment.ProcessPath!;
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") psi.ArgumentList.Add(typeof(OwnedTempFolderChild).Assembly.Location);
        psi.Environment[OwnedTempFolderChild.Variable] = mode;
        if (tmpDir != null) psi.Environment["TMPDIR"] = tmpDir;
        var child = Process.Start(psi)!;
        var read = new string[lines];
        for (int i = 0; i < lines; i++)
            read[i] = child.StandardOutput.ReadLine() ?? throw new InvalidOperationException($"the child exited early: {child.StandardError.ReadToEnd()}");
        return (child, read);
    }

    private static void SigKill(Process p)
    {
        p.Kill(); // SIGKILL on Linux: no handler of the child runs
        p.WaitForExit();
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2] != 'Z';
        }
        catch (IOException) { return false; }
    }

    private static void KillIfRunning(int pid)
    {
        try { using var p = Process.GetProcessById(pid); p.Kill(); } catch (ArgumentException) { }
    }

    [Fact]
    public void SigkilledOwner_FolderIsReapedByTheNextStart_OnlyTheProcessNamingTheFolderIsKilled()
    {
        using var tmp = new TempDir();
        var (child, lines) = StartChild("folder " + tmp.Path, 3);
        string folder = lines[0];
        int naming = int.Parse(lines[1], System.Globalization.CultureInfo.InvariantCulture);
        int notNaming = int.Parse(lines[2], System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            Assert.StartsWith(Path.Combine(tmp.Path, "cycleqd-test-child-"), folder);
            Assert.Single(Directory.GetFiles(tmp.Path, "cycleqd-owner-*.lock"));

            // While the owner lives, a reaper leaves everything alone.
            Assert.Empty(OwnedTempFolders.ReapStale(tmp.Path));
            Assert.True(Directory.Exists(folder));
            Assert.True(IsRunning(naming));

            SigKill(child);
            Assert.True(Directory.Exists(folder), "a SIGKILLed owner cannot clean up; the folder must still be there");
            Assert.True(IsRunning(naming), "the recorded process outlives its owner");

            // The next start in this temp folder reaps the dead owner's folder, its lock and the
            // recorded process whose command line names the folder, and creates its own folder.
            string mine = OwnedTempFolders.Create("cycleqd-test-", tmp.Path);
            Assert.False(Directory.Exists(folder));
            Assert.False(IsRunning(naming));
            Assert.True(IsRunning(notNaming), "a recorded pid whose command line does not name the folder (e.g. reused) must not be killed");
            Assert.True(Directory.Exists(mine));
            var locks = Directory.GetFiles(tmp.Path, "cycleqd-owner-*.lock");
            var own = Assert.Single(locks);
            Assert.Contains(Path.GetFileName(mine)[("cycleqd-test-".Length)..^7], own);
        }
        finally
        {
            if (!child.HasExited) SigKill(child);
            KillIfRunning(naming);
            KillIfRunning(notNaming);
        }
    }

    [Fact]
    public void LiveOwnersFolder_IsLeftAlone_ThisProcesssOwnFoldersToo()
    {
        using var tmp = new TempDir();
        var (child, lines) = StartChild("folder " + tmp.Path, 3);
        try
        {
            string mine = OwnedTempFolders.Create("cycleqd-test-", tmp.Path);
            Assert.Empty(OwnedTempFolders.ReapStale(tmp.Path));
            Assert.True(Directory.Exists(lines[0]));
            Assert.True(Directory.Exists(mine));
            Assert.Equal(2, Directory.GetFiles(tmp.Path, "cycleqd-owner-*.lock").Length);
        }
        finally
        {
            SigKill(child);
            KillIfRunning(int.Parse(lines[1], System.Globalization.CultureInfo.InvariantCulture));
            KillIfRunning(int.Parse(lines[2], System.Globalization.CultureInfo.InvariantCulture));
        }
    }

    [Fact]
    public void FolderWithoutOwnerLock_IsReaped_UnlessAnotherUserOwnsIt()
    {
        using var tmp = new TempDir();
        string orphan = Directory.CreateDirectory(Path.Combine(tmp.Path, "cycleqd-sandbox-0123456789ab.AbCdEf")).FullName;
        string foreign = Directory.CreateDirectory(Path.Combine(tmp.Path, "cycleqd-sandbox-ba9876543210.AbCdEf")).FullName;
        string unrelated = Directory.CreateDirectory(Path.Combine(tmp.Path, "cycleqd-mariadb-AbCdEf")).FullName; // an older naming: no owner is known
        bool root = Environment.IsPrivilegedProcess;
        if (root) Assert.Equal(0, Interop.Libc.chown(foreign, 65534, 65534));

        var reaped = OwnedTempFolders.ReapStale(tmp.Path);

        Assert.Contains(orphan, reaped);
        Assert.False(Directory.Exists(orphan));
        Assert.True(Directory.Exists(unrelated));
        if (root)
        {
            Assert.True(Directory.Exists(foreign), "a folder of another user is never deleted");
            Interop.Libc.chown(foreign, 0, 0);
        }
    }

    [Fact]
    public void SigkilledEvaluator_LeavesAMariadbd_TheNextStartKillsItAndDeletesItsFolder()
    {
        using var tmp = new TempDir();
        File.SetUnixFileMode(tmp.Path, (UnixFileMode)0b111_001_001); // the server's account must pass through
        var (child, lines) = StartChild("mariadb", 2, tmpDir: tmp.Path);
        string folder = lines[0];
        int mariadbd = int.Parse(lines[1], System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            SigKill(child);
            Assert.True(IsRunning(mariadbd), "without reaping, the server outlives the killed evaluator");
            Assert.True(Directory.Exists(folder));

            var reaped = OwnedTempFolders.ReapStale(tmp.Path);

            Assert.Equal([folder], reaped);
            Assert.False(IsRunning(mariadbd));
            Assert.Empty(Directory.GetFileSystemEntries(tmp.Path, "cycleqd-*")); // the owner lock is gone too
        }
        finally
        {
            if (!child.HasExited) SigKill(child);
            if (IsRunning(mariadbd)) KillIfRunning(mariadbd);
        }
    }

    [Theory]
    [InlineData("mariadb-")]
    [InlineData("cycleqd-Upper-")]
    [InlineData("cycleqd-no-dash")]
    [InlineData("cycleqd-../x-")]
    public void Create_RejectsAPrefixOutsideItsNamingScheme_NamingThePrefix(string prefix)
    {
        var e = Assert.Throws<ArgumentException>(() => OwnedTempFolders.Create(prefix));
        Assert.Contains(prefix, e.Message);
    }
}
