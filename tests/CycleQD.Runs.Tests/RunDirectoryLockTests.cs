using System.Diagnostics;
using CycleQD.Runs.Families;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

public class RunDirectoryLockTests
{
    [Fact]
    public void Resume_WhileAnotherSessionHoldsTheRun_RefusedNamingTheHolder()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic());
        ResumeTests.RunTo(exp, dir.File("r"), 2);
        using (var first = RunSession.Resume(dir.File("r"), 4))
        {
            var e = Assert.Throws<RunDirectoryException>(() => RunSession.Resume(dir.File("r"), 4));
            Assert.Contains("in use by another process (pid " + Environment.ProcessId + " on host " + Environment.MachineName, e.Message);
            Assert.Contains("one process at a time may run or resume a run directory", e.Message);
        }
        // Released on dispose: the same directory resumes and finishes.
        ResumeTests.ResumeTo(dir.File("r"), 4);
        Assert.Equal(4, ResumeTests.MetricsWithoutTiming(dir.File("r")).Length);
    }

    [Fact]
    public void Resume_WhileAnotherProcessHoldsTheLock_Refused_ThenFreeOnceItDies()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic());
        ResumeTests.RunTo(exp, dir.File("r"), 2);
        // util-linux flock(1) takes the same kind of lock (flock, LOCK_EX) a cycleqd process does;
        // with -o only flock itself holds it (not the command it runs), so killing flock frees it.
        // flock runs its command once it holds the lock, so the command's first line says the lock
        // is taken (however slowly flock starts on a loaded machine); the holder is killed at the end.
        var psi = new ProcessStartInfo("flock", ["-o", RunDirectoryLock.LockPath(dir.File("r")), "sh", "-c", "echo locked; exec sleep 600"])
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
        };
        using var holder = Process.Start(psi)!;
        try
        {
            Assert.Equal("locked", holder.StandardOutput.ReadLine());
            var refused = Assert.Throws<RunDirectoryException>(() => RunSession.Resume(dir.File("r"), 4).Dispose());
            Assert.Contains("in use by another process;", refused.Message); // no cycleqd owner note: the holder is not named
        }
        finally
        {
            holder.Kill(entireProcessTree: true); // its sleep too, which would linger for ten minutes
            holder.WaitForExit();
        }
        ResumeTests.ResumeTo(dir.File("r"), 4);
    }

    [Fact]
    public async Task Run_KilledBeforeFirstCheckpoint_RunPointsToResume_AndResumeStartsIt()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic());
        ResumeTests.RunTo(exp, dir.File("straight"), 6);
        // What a kill while the experts are scored leaves: run.json and experiment.yaml, no checkpoint.
        RunSession.Start(exp, dir.File("r"), 6, null).Dispose();
        Assert.False(File.Exists(dir.File("r/state/checkpoint.json")));

        var e = Assert.Throws<RunDirectoryException>(() => RunSession.Start(exp, dir.File("r"), 6, null));
        Assert.Contains("stopped before its first checkpoint; start it again with: cycleqd resume", e.Message);

        var notices = new List<string>();
        using (var s = RunSession.Resume(dir.File("r"), null, notice: notices.Add))
        {
            await s.InitializeAsync(TestContext.Current.CancellationToken);
            Assert.True(await s.RunAsync(TestContext.Current.CancellationToken));
        }
        Assert.Contains(notices, n => n.Contains("starting it from its experts", StringComparison.Ordinal));
        ResumeTests.AssertSameRun(dir.File("straight"), dir.File("r"), 6);
    }

    [Fact]
    public void Resume_RemovesTemporaryFilesOfInterruptedWrites()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic());
        ResumeTests.RunTo(exp, dir.File("r"), 3);
        string[] leftovers = [dir.File("r/.archive.json.tmp-99-abc"), dir.File("r/state/.checkpoint.json.tmp-99-abc"), dir.File("r/elites/.x.safetensors.tmp-99-abc")];
        foreach (var f in leftovers) File.WriteAllText(f, "partial");
        File.WriteAllText(dir.File("r/keep.txt"), "a user's file");
        RunSession.Resume(dir.File("r"), 3).Dispose();
        foreach (var f in leftovers) Assert.False(File.Exists(f), f);
        Assert.True(File.Exists(dir.File("r/keep.txt")));
    }

    [Fact]
    public void Start_FailsAfterChecks_LeavesNoDirectory()
    {
        using var dir = new TempDir();
        // Valid YAML whose model files do not exist: refused before the directory is made.
        string exp = Experiments.Write(dir, "exp.yaml", """
            name: t
            tasks: [tinyskills/code]
            model: { base: nowhere, experts: { tinyskills/code: nowhere } }
            evaluation: { tinyskills: . }
            """);
        Directory.CreateDirectory(dir.File("tasks/code"));
        Assert.Throws<Core.ConfigurationException>(() => RunSession.Start(exp, dir.File("r"), 2, null));
        Assert.False(Directory.Exists(dir.File("r")));
    }
}

public class RunSplitsTests
{
    [Fact]
    public void Halves_SameSeed_SameSplit_DisjointCoverAll_InOriginalOrder()
    {
        var ids = Enumerable.Range(0, 341).Select(i => (i * 7 % 360).ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        var (train, test) = RunSplits.Halves(ids, "agentbench_db", 0);
        var (train2, test2) = RunSplits.Halves(ids, "agentbench_db", 0);
        Assert.Equal(train, train2);
        Assert.Equal(test, test2);
        Assert.Equal(171, train.Count);
        Assert.Equal(170, test.Count);
        Assert.Empty(train.Intersect(test));
        Assert.Equal(ids.Order(), train.Concat(test).Order());
        Assert.Equal(ids.Where(train.Contains), train); // each half keeps the benchmark's order
        var (trainOther, _) = RunSplits.Halves(ids, "agentbench_db", 1);
        Assert.NotEqual(train, trainOther);
        var (trainTask, _) = RunSplits.Halves(ids, "mbpp", 0);
        Assert.NotEqual(train, trainTask);
    }

    [Fact]
    public void Json_RoundTrips()
    {
        using var dir = new TempDir();
        var s = new RunSplits(new Dictionary<string, TaskSplit>
        {
            ["mbpp"] = new("train", "test", ["Mbpp/2", "Mbpp/3"], ["Mbpp/4"]),
            ["tinyskills/code"] = new("valid", "test", null, null),
        }, 5);
        File.WriteAllBytes(dir.File("splits.json"), s.ToJson());
        var r = RunSplits.Read(dir.File("splits.json"), ["mbpp", "tinyskills/code"]);
        Assert.Equal(5UL, r.Seed);
        Assert.Equal(["Mbpp/2", "Mbpp/3"], r["mbpp"].SearchIds!);
        Assert.Equal(["Mbpp/4"], r["mbpp"].ReportIds!);
        Assert.Null(r["tinyskills/code"].SearchIds);
        Assert.Equal("valid", r["tinyskills/code"].Search);
        Assert.Throws<RunDirectoryException>(() => RunSplits.Read(dir.File("splits.json"), ["agentbench_os"]));
    }
}
