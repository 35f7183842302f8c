using System.Globalization;
using CycleQD.Tasks.Sandbox;
using CycleQD.Testing;

namespace CycleQD.Tasks.Tests;

/// <summary>Tests that hold most of the machine's sandbox uids: run alone in their process.</summary>
[CollectionDefinition(nameof(SandboxUidPool), DisableParallelization = true)]
public sealed class SandboxUidPool;

/// <summary>
/// The host uids a root caller hands to sandboxes are unique across processes on the machine, not
/// only within one: two processes (two runs, local workers, test assemblies run side by side) that
/// each started their pool at the same uid shared its process limit and killed each other's
/// sandboxes, a tree being killed by uid.
/// </summary>
[Collection(nameof(SandboxUidPool))]
public class SandboxUidTests
{
    [Fact]
    public void UidsLockedByAnotherHolder_AreNeverHandedOut()
    {
        MachineRequirement.Require(Environment.IsPrivilegedProcess, "only root gives each sandbox a uid of its own");
        // Stand in for other processes: lock the files of every pool uid but 32. An flock belongs to the
        // open file, so this process's own TakeUid meets these locks as another holder's.
        var free = Enumerable.Range(BubblewrapSandbox.UidPoolBase + 100, 32).ToHashSet();
        var held = new List<FileStream>();
        var leases = new List<BubblewrapSandbox.UidLease>();
        try
        {
            using (BubblewrapSandbox.TakeUid()) { }  // makes the lock folder
            for (int uid = BubblewrapSandbox.UidPoolBase; uid < BubblewrapSandbox.UidPoolBase + BubblewrapSandbox.UidPoolSize; uid++)
            {
                if (free.Contains(uid)) continue;
                try
                {
                    held.Add(new FileStream(Path.Combine(BubblewrapSandbox.UidLockFolder, uid.ToString(CultureInfo.InvariantCulture)),
                        FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
                }
                catch (IOException)
                {
                    // A sandbox of another process holds it right now: held either way.
                }
            }
            for (int i = 0; i < 4; i++) leases.Add(BubblewrapSandbox.TakeUid());
            Assert.All(leases, l => Assert.Contains(l.Uid, free));
            Assert.Equal(leases.Count, leases.Select(l => l.Uid).Distinct().Count());
        }
        finally
        {
            foreach (var l in leases) l.Dispose();
            foreach (var h in held) h.Dispose();
        }
    }
}
