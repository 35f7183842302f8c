using System.Net;
using System.Net.Sockets;
using CycleQD.Tasks.Sandbox;
using CycleQD.Testing;

namespace CycleQD.Tasks.Tests;

public sealed class SandboxTests
{
    // The commands here finish in milliseconds; the wall clock is only a backstop, so it is wide
    // enough for a 2-core machine shared with other builds (bubblewrap and python3 start slowly
    // there). Tests of the wall-clock limit itself set their own.
    private static readonly SandboxLimits Small = new()
    {
        WallClock = TimeSpan.FromSeconds(120),
        CpuSeconds = 2,
        AddressSpaceBytes = 512L << 20,
        FileSizeBytes = 1L << 20,
        Processes = 32,
        OutputBytes = 64 << 10,
    };

    private static async Task<SandboxResult> Run(SandboxLimits limits, params string[] command) =>
        await BubblewrapSandbox.Create().RunAsync(new SandboxRequest { Command = command, Limits = limits }, TestContext.Current.CancellationToken);

    /// <summary>Host processes whose command line contains <paramref name="marker"/>.</summary>
    private static List<int> ProcessesWith(string marker) => ProcessScan.WithArgument(marker);

    /// <summary>
    /// Starts <c>bash</c> running <c>sleep 600</c> in a sandbox, with <paramref name="marker"/> on its
    /// command line, and returns once the command itself runs (it says so on stdout). Before that the
    /// host may still show the launcher (setpriv, prlimit) that has not yet dropped to the sandbox's
    /// uid, and on a loaded machine that phase lasts long enough to be seen.
    /// </summary>
    private static async Task<SandboxProcess> StartSleeper(string marker)
    {
        var live = BubblewrapSandbox.Create().Start(new SandboxRequest { Command = ["bash", "-c", "echo running; sleep 600", marker], Limits = Small });
        string? first = await live.Process.StandardOutput.ReadLineAsync(TestContext.Current.CancellationToken);
        if (first == "running") return live;
        // No line at all: the sandbox exited, and its stderr says why.
        string why = first ?? await live.Process.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        await live.DisposeAsync();
        throw new InvalidOperationException("the sandboxed command did not start: " + why);
    }

    [Fact]
    public async Task SimpleCommand_RunsWithOutputAndExitCode()
    {
        var r = await Run(Small, "python3", "-c", "import sys; print('hi'); sys.exit(3)");
        Assert.Equal(3, r.ExitCode);
        Assert.Equal("hi\n", r.Stdout);
        Assert.False(r.TimedOut);
    }

    [Fact]
    public async Task Stdin_IsPassedToTheCommand()
    {
        var r = await BubblewrapSandbox.Create().RunAsync(new SandboxRequest { Command = ["cat"], Stdin = "abc\n", Limits = Small }, TestContext.Current.CancellationToken);
        Assert.Equal("abc\n", r.Stdout);
    }

    [Fact]
    public async Task InputFiles_AreReadableButNotWritable()
    {
        var r = await BubblewrapSandbox.Create().RunAsync(new SandboxRequest
        {
            Command = ["sh", "-c", "cat /input/a/b.txt; echo x > /input/a/b.txt && echo WROTE"],
            InputFiles = new Dictionary<string, string> { ["a/b.txt"] = "content\n" },
            Limits = Small,
        }, TestContext.Current.CancellationToken);
        Assert.StartsWith("content\n", r.Stdout);
        Assert.DoesNotContain("WROTE", r.Stdout);
    }

    [Fact]
    public async Task ReadingAHostFileOutsideTheSandbox_Fails()
    {
        using var tmp = new TempDir();
        string secret = tmp.File("secret.txt");
        await File.WriteAllTextAsync(secret, "TOP-SECRET", TestContext.Current.CancellationToken);
        File.SetUnixFileMode(tmp.Path, (UnixFileMode)0b111_101_101);
        File.SetUnixFileMode(secret, (UnixFileMode)0b110_100_100);
        // Each read must fail on its own (the sandbox has its own /work, so only paths that exist
        // on the host alone are meaningful here).
        var r = await Run(Small, "sh", "-c",
            $"cat '{secret}' && echo READ-SECRET; cat /root/.bashrc && echo READ-HOME; ls '{TestPaths.RepoRoot}' && echo READ-REPO; exit 0");
        Assert.Equal(0, r.ExitCode);
        Assert.DoesNotContain("TOP-SECRET", r.Stdout);
        Assert.DoesNotContain("READ-", r.Stdout);
        Assert.Contains("No such file", r.Stderr);
    }

    [Fact]
    public async Task SystemFolders_AreReadOnly_WorkDirIsWritable()
    {
        var r = await Run(Small, "sh", "-c", "touch /usr/cycleqd-probe 2>/dev/null && echo USR-WRITABLE; echo ok > /work/f && cat /work/f");
        Assert.DoesNotContain("USR-WRITABLE", r.Stdout);
        Assert.Contains("ok", r.Stdout);
    }

    [Fact]
    public async Task NetworkConnectionToTheHost_Fails()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try
        {
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            var r = await Run(Small, "python3", "-c",
                $"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('CONNECTED')");
            Assert.NotEqual(0, r.ExitCode);
            Assert.DoesNotContain("CONNECTED", r.Stdout);
            Assert.Contains("ConnectionRefusedError", r.Stderr);
        }
        finally
        {
            listener.Stop();
        }
    }

    [Fact]
    public async Task Capabilities_AreDropped_AndTheProcessesRunAsAnUnprivilegedHostUid()
    {
        var r = await Run(Small, "sh", "-c", "grep CapEff /proc/self/status; id -u");
        Assert.Contains("CapEff:\t0000000000000000", r.Stdout);
        Assert.EndsWith("65534\n", r.Stdout);

        string marker = "cycleqd-uid-" + Guid.NewGuid().ToString("N")[..8];
        await using var live = await StartSleeper(marker);
        List<int> pids = ProcessesWith(marker);
        Assert.NotEmpty(pids);
        foreach (int pid in pids)
        {
            string uidLine = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal));
            var uids = uidLine.Split('\t', StringSplitOptions.RemoveEmptyEntries).Skip(1).ToArray();
            if (Environment.IsPrivilegedProcess) Assert.All(uids, u => Assert.NotEqual("0", u));
        }
    }

    [Fact]
    public async Task ForkBomb_IsContained_AndLeavesNoProcess()
    {
        string marker = "cycleqd-forkbomb-" + Guid.NewGuid().ToString("N")[..8];
        var limits = Small with { WallClock = TimeSpan.FromSeconds(3), Processes = 16 };
        var r = await Run(limits, "bash", "-c", "b() { b | b & }; b; sleep 30", marker);
        Assert.False(r.Succeeded);
        Assert.Empty(ProcessesWith(marker));
    }

    [Fact]
    public async Task InfiniteLoop_IsStoppedByTheCpuLimit()
    {
        // The wall clock must not stop the loop first: one CPU second can take a minute of wall time
        // on a 2-core machine shared with other builds, so it is far above that.
        var limits = Small with { CpuSeconds = 1, WallClock = TimeSpan.FromSeconds(300) };
        var r = await Run(limits, "python3", "-c", "while True: pass");
        Assert.False(r.TimedOut);
        // SIGXCPU (24) at the soft limit, or SIGKILL (9) at the hard one.
        Assert.Contains(r.ExitCode, new[] { 128 + 24, 128 + 9 });
    }

    [Fact]
    public async Task Sleep_IsStoppedByTheWallClock()
    {
        var r = await Run(Small with { WallClock = TimeSpan.FromSeconds(1) }, "sleep", "60");
        Assert.True(r.TimedOut);
        Assert.False(r.Succeeded);
    }

    [Fact]
    public async Task TenGigabyteAllocation_FailsUnderTheAddressSpaceLimit()
    {
        var r = await Run(Small, "python3", "-c", "b = bytearray(10 * 1024**3)\nprint('ALLOCATED')");
        Assert.NotEqual(0, r.ExitCode);
        Assert.DoesNotContain("ALLOCATED", r.Stdout);
        Assert.Contains("MemoryError", r.Stderr);
    }

    [Fact]
    public async Task OneGigabytePrint_IsCutAtTheOutputBound_KeepingAPrefixAndATail()
    {
        var r = await Run(Small with { WallClock = TimeSpan.FromSeconds(30) }, "python3", "-c",
            "import sys\nchunk = 'x' * 65536\nfor _ in range(16384): sys.stdout.write(chunk)");
        Assert.True(r.OutputLimitExceeded);
        Assert.False(r.Succeeded);
        Assert.StartsWith(new string('x', Small.OutputBytes) + "\n[… ", r.Stdout);
        Assert.Contains(" bytes dropped …]\n", r.Stdout);
        Assert.True(r.Stdout.Length <= Small.OutputBytes + Small.OutputTailBytes + 64, $"{r.Stdout.Length} characters kept");
    }

    [Fact]
    public async Task BoundedCapture_KeepsPrefixAndTail_DrainsTheRest_AndSignalsOnce()
    {
        byte[] data = new byte[10_000_000];
        for (int i = 0; i < data.Length; i++) data[i] = (byte)('a' + i % 26);
        int signals = 0;
        var (text, exceeded) = await BubblewrapSandbox.CaptureBoundedAsync(new MemoryStream(data), 1000, 100, () => signals++);
        Assert.True(exceeded);
        Assert.Equal(1, signals);
        string all = System.Text.Encoding.ASCII.GetString(data);
        Assert.Equal(all[..1000] + $"\n[… {data.Length - 1100} bytes dropped …]\n" + all[^100..], text);

        var (small, over) = await BubblewrapSandbox.CaptureBoundedAsync(new MemoryStream(data, 0, 1000), 1000, 100, () => signals++);
        Assert.False(over);
        Assert.Equal(all[..1000], small);
        Assert.Equal(1, signals);
    }

    [Fact]
    public async Task BoundedCopy_StopsWritingAtTheLimit_AndReadsTheStreamToItsEnd()
    {
        var source = new MemoryStream(new byte[5_000_000]);
        var sink = new MemoryStream();
        int signals = 0;
        Assert.True(await BubblewrapSandbox.CopyBoundedAsync(source, sink, 123_456, () => signals++));
        Assert.Equal(123_456, sink.Length);
        Assert.Equal(source.Length, source.Position);
        Assert.Equal(1, signals);
        Assert.False(await BubblewrapSandbox.CopyBoundedAsync(new MemoryStream(new byte[10]), new MemoryStream(), 10, () => signals++));
    }

    /// <summary>Shmem of /proc/meminfo in bytes: every tmpfs page on the host, the sandboxes' included.</summary>
    private static long HostShmemBytes() =>
        long.Parse(File.ReadLines("/proc/meminfo").First(l => l.StartsWith("Shmem:", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;

    [Fact]
    public async Task WritesPastTheTmpfsSize_FailInside_AndDoNotRaiseHostSharedMemory()
    {
        const long size = 8L << 20;
        var limits = Small with { TmpfsBytes = size, FileSizeBytes = 2L << 30, WallClock = TimeSpan.FromSeconds(30), CpuSeconds = 20 };
        // 512 MiB into each of /tmp and /dev/shm, then a pause in which the host is measured.
        string script = "for d in /tmp /dev/shm; do head -c 536870912 /dev/zero > $d/big; echo $d $(wc -c < $d/big); done; "
                      + "echo > /dev/cycleqd-probe || echo DEV-READ-ONLY; echo ready; sleep 3";
        long before = HostShmemBytes();
        var sandbox = BubblewrapSandbox.Create();
        var run = sandbox.RunAsync(new SandboxRequest { Command = ["bash", "-c", script], Limits = limits }, TestContext.Current.CancellationToken);
        long peak = before;
        while (!run.IsCompleted)
        {
            peak = Math.Max(peak, HostShmemBytes());
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
        var r = await run;
        Assert.Contains("ready", r.Stdout);
        Assert.Contains("No space left on device", r.Stderr);
        Assert.Contains("DEV-READ-ONLY", r.Stdout);
        foreach (var d in new[] { "/tmp", "/dev/shm" })
        {
            long held = long.Parse(r.Stdout.Split('\n').First(l => l.StartsWith(d + " ", StringComparison.Ordinal))[(d.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(held, 1, size);
        }
        // Unbounded, the two mounts would have taken 2 GiB of host memory; bounded they hold 16 MiB.
        // The margin absorbs other processes of a shared machine.
        Assert.True(peak - before < 256L << 20, $"host Shmem rose by {(peak - before) >> 20} MiB");
    }

    [Fact]
    public async Task LargeFileWrite_IsStoppedByTheFileSizeLimit()
    {
        var r = await Run(Small, "sh", "-c", "head -c 8000000 /dev/zero > /work/big; echo rc=$?; wc -c < /work/big");
        Assert.Contains("rc=153", r.Stdout); // 128 + SIGXFSZ (25)
        Assert.Contains($"{Small.FileSizeBytes}", r.Stdout);
    }

    [Fact]
    public async Task BackgroundProcesses_DoNotOutliveTheCall()
    {
        string marker = "cycleqd-orphan-" + Guid.NewGuid().ToString("N")[..8];
        var r = await Run(Small, "bash", "-c", "setsid bash -c 'sleep 600' & nohup bash -c 'sleep 601' >/dev/null 2>&1 & echo started", marker);
        Assert.Equal("started\n", r.Stdout);
        Assert.Empty(ProcessesWith(marker));
        await using (var live = await StartSleeper(marker))
        {
            Assert.NotEmpty(ProcessesWith(marker));
        }
        Assert.Empty(ProcessesWith(marker));
    }

    [Fact]
    public async Task EveryProcessOfALiveSandbox_IsRecognisedAsItsOwn_WhenItRunsUnderAPoolUid()
    {
        MachineRequirement.Require(Environment.IsPrivilegedProcess, "only root gives each sandbox a uid of its own, which is how its processes are told apart");
        string marker = "cycleqd-member-" + Guid.NewGuid().ToString("N")[..8];
        var live = BubblewrapSandbox.Create().Start(new SandboxRequest
        {
            Command = ["bash", "-c", $"setsid bash -c 'sleep 601; true' {marker} & sleep 1; echo running; sleep 602", marker],
            Limits = Small,
        });
        try
        {
            Assert.Equal("running", await live.Process.StandardOutput.ReadLineAsync(TestContext.Current.CancellationToken));
            var pids = ProcessesWith(marker);
            Assert.True(pids.Count >= 2, $"{pids.Count} processes");
            Assert.All(pids, pid => Assert.True(live.Owns(pid), $"pid {pid} ({ProcessScan.CommandLine(pid)}) is not recognised"));
            Assert.False(live.Owns(Environment.ProcessId));
        }
        finally
        {
            await live.DisposeAsync();
        }
        Assert.Empty(ProcessesWith(marker));
    }
}
