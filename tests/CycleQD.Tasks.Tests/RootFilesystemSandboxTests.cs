using System.Net;
using System.Net.Sockets;
using CycleQD.Tasks.AgentBenchOs;
using CycleQD.Tasks.Sandbox;
using CycleQD.Testing;

namespace CycleQD.Tasks.Tests;

/// <summary>
/// The sandbox on the pinned AgentBench OS root file system (scripts/build-os-rootfs.sh, built by
/// ./build.sh setup). Mapping an id range needs root, as the AgentBench OS evaluation does.
/// </summary>
public sealed class RootFilesystemSandboxTests
{
    private static readonly SandboxLimits Small = new()
    {
        WallClock = TimeSpan.FromSeconds(60),
        CpuSeconds = 30,
        AddressSpaceBytes = 1L << 30,
        FileSizeBytes = 64L << 20,
        Processes = 64,
        OutputBytes = 1 << 20,
    };

    private static OsRootFilesystem Rootfs()
    {
        MachineRequirement.Require(Environment.IsPrivilegedProcess, "a sandbox on a root file system maps an id range, which needs root");
        return OsRootFilesystem.Load();
    }

    private static async Task<SandboxResult> Run(string script, SandboxLimits? limits = null, long writableBytes = 64L << 20)
    {
        var rootfs = Rootfs();
        return await BubblewrapSandbox.Create().RunAsync(new SandboxRequest
        {
            Command = ["bash", "-c", script],
            RootFilesystem = rootfs.ForSandbox(writableBytes),
            Limits = limits ?? Small,
        }, TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task HostOnlyFileUnderUsrLocalShare_IsVisibleInTheHostLayout_ButNotOnTheRootFilesystem()
    {
        Rootfs();
        string name = "cycleqd-host-marker-" + Guid.NewGuid().ToString("N")[..8];
        string marker = Path.Combine("/usr/local/share", name);
        await File.WriteAllTextAsync(marker, "HOST-ONLY", TestContext.Current.CancellationToken);
        try
        {
            string script = $"cat /usr/local/share/{name} 2>&1; find / -xdev -name '{name}' 2>/dev/null | head -1; echo done";
            // The host layout binds the host's /usr: the marker shows there, so the check below can fail.
            var host = await BubblewrapSandbox.Create().RunAsync(new SandboxRequest { Command = ["bash", "-c", script], Limits = Small }, TestContext.Current.CancellationToken);
            Assert.Contains("HOST-ONLY", host.Stdout);

            var r = await Run(script + "; . /etc/os-release; echo \"$ID $VERSION_ID\"");
            Assert.DoesNotContain("HOST-ONLY", r.Stdout);
            Assert.DoesNotContain(name + "\n", r.Stdout.Replace($"cat: /usr/local/share/{name}", "", StringComparison.Ordinal));
            Assert.Contains("No such file or directory", r.Stdout);
            Assert.Contains("debian 12", r.Stdout);
        }
        finally
        {
            File.Delete(marker);
        }
    }

    [Fact]
    public async Task ReferenceImagePrograms_ArePresent_AndSudoComesFromTheLocalAptRepository()
    {
        var r = await Run("for p in python3 pip3 git vim curl wget zip unzip tree; do command -v $p >/dev/null && echo have-$p; done; " +
                          "command -v sudo || echo no-sudo; apt-get update -qq 2>&1 | tail -1; apt-get install -y -qq sudo >/dev/null 2>&1; sudo whoami");
        foreach (var p in new[] { "python3", "pip3", "git", "vim", "curl", "wget", "zip", "unzip", "tree" })
            Assert.Contains("have-" + p, r.Stdout);
        Assert.Contains("no-sudo", r.Stdout);
        Assert.EndsWith("root\n", r.Stdout);
    }

    [Fact]
    public async Task FindFromTheTop_ReadsEveryFolder_AsRootInAContainerDoes()
    {
        var r = await Run("find / -name '*.helloworld' > /dev/null; echo rc=$?");
        Assert.Equal("", r.Stderr);
        Assert.Equal("rc=0\n", r.Stdout);
    }

    [Fact]
    public async Task Users_CanBeCreated_AndSwitchedTo_AsInAContainer()
    {
        var r = await Run("useradd -m -s /bin/bash jack && echo secret > /f && chmod 600 /f && chown jack /f && " +
                          "su - jack -c 'id -un; cat /f' && runuser -u jack -- id -u && stat -c %U /home/jack; " +
                          "useradd bill && runuser -u bill -- cat /f || echo bill-denied");
        Assert.Equal("jack\nsecret\n1000\njack\nbill-denied\n", r.Stdout.Replace("cat: /f: Permission denied\n", "", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SandboxRoot_HasNoHostPrivilege_AndNoNetwork()
    {
        var rootfs = Rootfs();
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try
        {
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            var r = await Run($"cat /proc/self/uid_map; grep CapEff /proc/self/status; mount -t tmpfs none /mnt 2>/dev/null && echo MOUNTED; " +
                              $"(echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo CONNECTED; " +
                              $"ls {TestPaths.RepoRoot} >/dev/null 2>&1 && echo SEES-REPO; id -u");
            // uid 0 inside is an unassigned host id, and the capabilities are Docker's default set
            // (no CAP_SYS_ADMIN: no mounts) within that user namespace.
            Assert.Matches($@"^\s*0\s+{rootfs.UidBase}\s+{rootfs.UidCount}\n", r.Stdout);
            Assert.Contains("CapEff:\t00000000a80425fb", r.Stdout);
            Assert.DoesNotContain("MOUNTED", r.Stdout);
            Assert.DoesNotContain("CONNECTED", r.Stdout);
            Assert.DoesNotContain("SEES-REPO", r.Stdout);
            Assert.EndsWith("0\n", r.Stdout);
        }
        finally
        {
            listener.Stop();
        }
    }

    [Fact]
    public async Task Writes_StayInTheSample_AndNeverReachTheSharedTree()
    {
        var rootfs = Rootfs();
        string passwd = await File.ReadAllTextAsync(Path.Combine(rootfs.Root, "etc", "passwd"), TestContext.Current.CancellationToken);
        var first = await Run("echo probe > /usr/bin/cycleqd-probe && rm /etc/passwd; ls /usr/bin/cycleqd-probe; test -e /etc/passwd || echo no-passwd");
        Assert.Contains("/usr/bin/cycleqd-probe", first.Stdout);
        Assert.Contains("no-passwd", first.Stdout);
        var second = await Run("ls /usr/bin/cycleqd-probe 2>&1; grep -c '^root:' /etc/passwd");
        Assert.Contains("No such file", second.Stdout);
        Assert.EndsWith("1\n", second.Stdout);
        Assert.False(File.Exists(Path.Combine(rootfs.Root, "usr", "bin", "cycleqd-probe")));
        Assert.Equal(passwd, await File.ReadAllTextAsync(Path.Combine(rootfs.Root, "etc", "passwd"), TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task WritingPastTheWritableBound_FailsWithNoSpace()
    {
        var r = await Run("for i in 1 2 3 4; do head -c 12000000 /dev/zero > /tmp/f$i || echo FAILED-$i; done 2>&1; echo end",
            writableBytes: 32L << 20);
        Assert.Contains("No space left on device", r.Stdout);
        Assert.Contains("FAILED-3", r.Stdout);
    }

    [Fact]
    public async Task ProcessLimit_BoundsTheWholeSandbox_EvenAcrossManyUidsInside()
    {
        // Root inside may switch to any mapped uid; the per-uid process limit must not multiply by them.
        var limits = Small with { Processes = 16, WallClock = TimeSpan.FromSeconds(30) };
        const string forkAcrossUids = """
            import os, time
            started = 0
            for u in range(1000, 1064):
                try:
                    pid = os.fork()
                except OSError:
                    continue
                if pid == 0:
                    os.setresgid(u, u, u)
                    os.setresuid(u, u, u)
                    time.sleep(20)
                    os._exit(0)
                started += 1
            print(started)
            """;
        var r = await Run($"python3 -c '{forkAcrossUids}'", limits);
        int started = int.Parse(r.Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(started, 1, 15);
    }

    [Fact]
    public async Task HugeAllocation_AndHugeOutput_AreStoppedByTheirLimits()
    {
        var mem = await Run("python3 -c 'b = bytearray(10 * 1024**3); print(\"ALLOCATED\")' 2>&1; echo rc=$?");
        Assert.Contains("MemoryError", mem.Stdout);
        Assert.DoesNotContain("ALLOCATED", mem.Stdout);
        var output = await Run("head -c 100000000 /dev/zero | tr '\\0' x");
        Assert.True(output.OutputLimitExceeded);
        // The prefix up to the bound, the line saying how much was dropped, then at most the tail.
        Assert.StartsWith(new string('x', Small.OutputBytes) + "\n[… ", output.Stdout);
        Assert.Matches(@"\n\[… [0-9]+ bytes dropped …\]\nx+$", output.Stdout);
        Assert.True(output.Stdout.Length <= Small.OutputBytes + Small.OutputTailBytes + 64, $"{output.Stdout.Length} characters kept");
    }

    [Fact]
    public async Task BackgroundProcesses_DoNotOutliveTheSandbox()
    {
        string marker = "cycleqd-rootfs-orphan-" + Guid.NewGuid().ToString("N")[..8];
        var r = await Run($"setsid bash -c 'sleep 600' {marker} & nohup bash -c 'sleep 601' {marker} >/dev/null 2>&1 & echo started");
        Assert.Equal("started\n", r.Stdout);
        Assert.Empty(ProcessScan.WithArgument(marker));
    }

    [Fact]
    public async Task EveryProcessOfALiveSandbox_IsRecognisedAsItsOwn_AndNoneIsLeftOnceItIsDisposed()
    {
        var rootfs = Rootfs();
        string marker = "cycleqd-rootfs-member-" + Guid.NewGuid().ToString("N")[..8];
        var live = BubblewrapSandbox.Create().Start(new SandboxRequest
        {
            // A background child that changes its uid inside, and one in a session of its own.
            Command = ["bash", "-c", $"runuser -u nobody -- bash -c 'sleep 600; true' {marker} & setsid bash -c 'sleep 601; true' {marker} & sleep 1; echo running; sleep 602", marker],
            RootFilesystem = rootfs.ForSandbox(64L << 20),
            Limits = Small,
        });
        List<int> pids;
        try
        {
            Assert.Equal("running", await live.Process.StandardOutput.ReadLineAsync(TestContext.Current.CancellationToken));
            pids = ProcessScan.WithArgument(marker);
            Assert.True(pids.Count >= 3, $"{pids.Count} processes");
            Assert.All(pids, pid => Assert.True(live.Owns(pid), $"pid {pid} ({ProcessScan.CommandLine(pid)}) is not recognised"));
            Assert.False(live.Owns(Environment.ProcessId));
        }
        finally
        {
            await live.DisposeAsync();
        }
        Assert.Empty(ProcessScan.WithArgument(marker));
    }

    [Fact]
    public void MissingRootFilesystem_SaysHowToBuildIt()
    {
        using var tmp = new TempDir();
        var e = Assert.Throws<SandboxUnavailableException>(() => OsRootFilesystem.Load(tmp.Path));
        Assert.Contains(Path.Combine(tmp.Path, OsRootFilesystem.FolderName, "manifest.json"), e.Message);
        Assert.Contains("./build.sh setup", e.Message);
    }

    [Fact]
    public void Manifest_RecordsTheHashAndThePackages_AndTheBenchmarkExposesIt()
    {
        var rootfs = OsRootFilesystem.Load();
        Assert.Matches("^sha256:[0-9a-f]{64}$", rootfs.Hash);
        Assert.Contains(rootfs.Packages, p => p.StartsWith("python3 ", StringComparison.Ordinal));
        Assert.Contains(rootfs.Packages, p => p.StartsWith("tree ", StringComparison.Ordinal));
        Assert.DoesNotContain(rootfs.Packages, p => p.StartsWith("sudo ", StringComparison.Ordinal));
        var bench = new AgentBenchOsBenchmark(new AgentBenchOsOptions { DataDir = TestPaths.RequireSharedData() });
        Assert.Equal(rootfs.Hash, bench.EnvironmentFingerprint);
    }
}
