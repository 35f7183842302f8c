using CycleQD.Tasks.AgentBenchOs;
using CycleQD.Tasks.Scripted;
using CycleQD.Testing;

namespace CycleQD.Tasks.Tests;

public sealed class AgentBenchOsTests
{
    private static AgentBenchOsBenchmark Bench(params int[] ids)
    {
        MachineRequirement.Require(Environment.IsPrivilegedProcess, "AgentBench OS samples run on the pinned root file system, whose id mapping needs root");
        // These tests check the harness and the image, not the reference's 5 s turn timeout: on a
        // machine shared with other test projects a gold script's turn can go quiet for longer.
        return new(new AgentBenchOsOptions
        {
            DataDir = TestPaths.RequireSharedData(), Ids = ids, Repeats = 1,
            TurnTimeout = TimeSpan.FromSeconds(30), TurnLimit = TimeSpan.FromSeconds(90),
        });
    }

    [Theory]
    [InlineData("Think: x\n\nAct: bash\n\n```bash\nls\n```\n\n```bash\npwd\n```", "bash", "ls\n\npwd")]
    [InlineData("Act: answer(42)", "answer", "42")]
    [InlineData("Act: ANSWER(a (b) c)", "answer", "a (b) c")]
    [InlineData("Act: finish", "finish", null)]
    [InlineData("Act: bash\nAct: answer(7)", "answer", "7")] // the last Act line decides
    [InlineData("Act: bash\n```bash\nls\n```\nAct: answer 7", "bash", "ls")] // answer without parentheses is skipped
    public void ParseAction_FollowsTheReference(string reply, string kind, string? content)
    {
        var a = AgentBenchOsBenchmark.ParseAction(reply);
        Assert.NotNull(a);
        Assert.Equal(kind, a.Value.Kind);
        Assert.Equal(content, a.Value.Content);
    }

    [Fact]
    public async Task TheSupervisor_IsOutOfSight_AndTheAgentHasNoAdminCapability()
    {
        MachineRequirement.Require(Environment.IsPrivilegedProcess, "AgentBench OS samples run on the pinned root file system, whose id mapping needs root");
        var rootfs = OsRootFilesystem.Load();
        await using var env = OsEnvironment.Start(Sandbox.BubblewrapSandbox.Create(), rootfs, TimeSpan.FromMinutes(2));
        var ct = TestContext.Current.CancellationToken;
        // A walk of / as a container's root: no unreadable entry anywhere (samples 11 and 166 count its lines).
        var (code, output) = await env.ExecAsync(new OsScript("bash", "find / -name '*.no-such-file' 2>&1 >/dev/null | head -5; echo rc=${PIPESTATUS[0]}"), [], ct);
        Assert.Equal(0, code);
        Assert.Equal("rc=0\n", output);
        // The supervisor is the parent of every exec'd script; its /proc entry is an empty read-only folder.
        (code, output) = await env.ExecAsync(new OsScript("bash", """
            s=$PPID
            echo "entries=$(ls -A /proc/$s | wc -l)"
            ps -e -o pid=,comm= | awk '{print $2}' | grep -c python || true
            umount /proc/$s 2>/dev/null && echo UNMOUNTED
            mount -t proc proc /mnt 2>/dev/null && echo MOUNTED-PROC
            grep -E '^Cap(Eff|Bnd|Inh|Amb)' /proc/self/status
            """), [], ct);
        Assert.Equal(0, code);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("entries=0", lines[0]);
        Assert.Equal("0", lines[1]); // ps lists no python: the supervisor is not visible
        Assert.DoesNotContain("UNMOUNTED", output);
        Assert.DoesNotContain("MOUNTED-PROC", output);
        const ulong SysAdmin = 1UL << 21;
        var caps = lines.Where(l => l.StartsWith("Cap", StringComparison.Ordinal)).ToArray();
        Assert.Equal(4, caps.Length);
        foreach (var l in caps)
        {
            ulong mask = ulong.Parse(l.Split(':')[1].Trim(), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True((mask & SysAdmin) == 0, l);
        }
        // Root of a container still has a container's capabilities (chown, setuid, …).
        Assert.NotEqual(0UL, ulong.Parse(caps.First(l => l.StartsWith("CapEff", StringComparison.Ordinal)).Split(':')[1].Trim(), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void ParseAction_WithoutAct_IsNull() => Assert.Null(AgentBenchOsBenchmark.ParseAction("I think the answer is 4."));

    [Fact]
    public async Task ShellSession_PersistsAcrossRounds_AndTheOutputComesBackWithThePrompt()
    {
        var bench = Bench(1);
        int turn = 0;
        var seen = new List<string>();
        var responder = new ScriptedResponder(req =>
        {
            seen.Add(req.Prompt);
            return turn++ switch
            {
                0 => "Act: bash\n\n```bash\ncd /tmp && X=41 && echo hello > f.txt\n```",
                1 => "Act: bash\n\n```bash\necho $((X+1)) $(pwd) $(cat f.txt)\n```",
                _ => "Act: answer(0)",
            };
        });
        var report = await bench.EvaluateAsync(responder, null, TestContext.Current.CancellationToken);
        Assert.Equal([1, 1, 1], responder.BatchSizes);
        Assert.Contains("42 /tmp hello", seen[2]);
        Assert.Contains("The output of the OS:\n\n", seen[2]);
        Assert.Contains("root@5f3b9c2a7d41:/tmp#", seen[2]); // the prompt stays in the text (the template trims the space after it)
        Assert.False(report.Samples[0].Correct); // answer 0 is not the count of the sample's question
    }

    [Fact]
    public async Task GoldResponder_PassesTheFirstCheckSamples_InOneBatchPerRound()
    {
        var bench = Bench(1, 2, 3, 4, 5, 12, 13);
        var gold = bench.CreateGoldResponder();
        var report = await bench.EvaluateAsync(gold, null, TestContext.Current.CancellationToken);
        Assert.All(report.Samples, s => Assert.True(s.Correct, s.Id + ": " + s.Reason));
        Assert.Equal([7, 7], gold.BatchSizes);
    }

    [Fact]
    public async Task GoldResponder_PassesTheSamplesThatDependOnTheImage()
    {
        // /usr and / as the image has them (42, 43, 45, 46), /var/log (93, 123), users and
        // groups (49, 164, 165), sudo installed by apt (52), ps (57, 60), a fresh shell's PATH (28),
        // SIGPIPE at its default in the shell (19: `ls -lt /usr | head`).
        var bench = Bench(19, 28, 42, 43, 45, 46, 49, 52, 57, 60, 93, 123, 164, 165);
        var report = await bench.EvaluateAsync(bench.CreateGoldResponder(), null, TestContext.Current.CancellationToken);
        Assert.All(report.Samples, s => Assert.True(s.Correct, s.Id + ": " + s.Reason));
    }

    [Fact]
    public async Task AgentShell_DoesNotSeeAFileThatOnlyTheHostsUsrHas()
    {
        var bench = Bench(1);
        string name = "cycleqd-os-marker-" + Guid.NewGuid().ToString("N")[..8];
        string marker = Path.Combine("/usr/local/share", name);
        await File.WriteAllTextAsync(marker, "HOST-ONLY", TestContext.Current.CancellationToken);
        try
        {
            int turn = 0;
            string? seen = null;
            var responder = new ScriptedResponder(req =>
            {
                if (turn++ == 0) return $"Act: bash\n\n```bash\ncat /usr/local/share/{name}; ls /usr/local/share | wc -l\n```";
                seen = req.Prompt;
                return "Act: finish";
            });
            await bench.EvaluateAsync(responder, null, TestContext.Current.CancellationToken);
            Assert.NotNull(seen);
            Assert.Contains($"cat: /usr/local/share/{name}: No such file or directory", seen);
            Assert.DoesNotContain("HOST-ONLY", seen);
        }
        finally
        {
            File.Delete(marker);
        }
    }

    [Fact]
    public async Task FinishAction_IsCheckedWithTheAnswerNone()
    {
        var bench = Bench(1);
        var report = await bench.EvaluateAsync(new ScriptedResponder(_ => "Act: finish"), null, TestContext.Current.CancellationToken);
        Assert.False(report.Samples[0].Correct);
        Assert.Contains("answer 'None'", report.Samples[0].Reason);
    }

    [Fact]
    public async Task SandboxedShell_CannotReachTheHostOrTheNetwork()
    {
        var bench = Bench(1);
        int turn = 0;
        string? seen = null;
        var responder = new ScriptedResponder(req =>
        {
            if (turn++ == 0) return $"Act: bash\n\n```bash\nls {TestPaths.RepoRoot} 2>&1 | head -1; (echo > /dev/tcp/127.0.0.1/22) 2>&1 | head -1; id -u\n```";
            seen = req.Prompt;
            return "Act: finish";
        });
        await bench.EvaluateAsync(responder, null, TestContext.Current.CancellationToken);
        Assert.NotNull(seen);
        Assert.Contains("No such file or directory", seen);
        Assert.Contains("Connection refused", seen.Replace("Network is unreachable", "Connection refused", StringComparison.Ordinal));
    }
}
