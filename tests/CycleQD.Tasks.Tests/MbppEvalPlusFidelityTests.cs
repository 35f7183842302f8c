using System.Diagnostics;
using CycleQD.Tasks.Mbpp;
using CycleQD.Tasks.Python;
using CycleQD.Tasks.Sandbox;
using CycleQD.Testing;

namespace CycleQD.Tasks.Tests;

/// <summary>Where the MBPP+ harness follows EvalPlus (input conversion) and where it bounds it on purpose (the whole-run cap).</summary>
public sealed class MbppEvalPlusFidelityTests
{
    private static MbppPlusBenchmark Bench(double? cap = MbppPlusOptions.DefaultTotalTimeCapSeconds, bool plus = true) =>
        new(new MbppPlusOptions { DataDir = TestPaths.RequireSharedData(), TaskIds = ["Mbpp/115"], TotalTimeCapSeconds = cap, RunPlus = plus });

    /// <summary>The harness's deserialize() on <paramref name="inputsJson"/>, as Python's repr with each member's type name.</summary>
    private static string Deserialize(string taskId, string inputsJson)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("mbpp_harness.py"), EmbeddedScripts.Read("mbpp_harness.py"));
        var psi = new ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir.Path };
        foreach (var a in new[] { "-s", "-c", "import json, sys, mbpp_harness as h; r = h.deserialize(sys.argv[1], json.loads(sys.argv[2])); " +
            "print(repr(r), [type(x).__name__ for inp in r for x in inp[0]])", taskId, inputsJson })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, err);
        return output.Trim();
    }

    [Fact]
    public void Mbpp115_NonEmptyListsBecomeSets_AndEveryOtherMemberAnEmptyDict()
    {
        // EvalPlus: set(item) if isinstance(item, list) and len(item) else {} — so [], {"a": {}} and None all become {}.
        Assert.Equal("[[[{1, 2}, {}, {}, {}, {}]]] ['set', 'dict', 'dict', 'dict', 'dict']",
            Deserialize("Mbpp/115", """[[[[1, 2], [], {"a": {}}, null, "not a dictionary"]]]"""));
    }

    /// <summary>
    /// Right only when empty members arrive as {}: like the canonical solution it lets the non-empty
    /// sets pass, and it compares every other member with {} (set() == {} is False, so were empty
    /// lists turned into sets, base input [[], [], []] would fail).
    /// </summary>
    private const string DictComparingSolution = "\ndef empty_dit(list1):\n    return all(d == {} for d in list1 if not (isinstance(d, set) and d))\n";

    [Fact]
    public async Task Mbpp115_ASolutionComparingWithAnEmptyDict_PassesBaseAsUnderEvalPlus()
    {
        // Base inputs [[], [], []], [[1, 2], [], []] and [[]] reach the code as [{}, {}, {}], [{1, 2}, {}, {}] and [{}].
        var bench = Bench(plus: false);
        var p = bench.SelectedProblems().Single();
        var sandbox = BubblewrapSandbox.Create();
        var truth = (await bench.EnsureGroundTruthAsync([p], sandbox, TestContext.Current.CancellationToken))[p.TaskId];
        var v = await bench.CheckAsync(p, DictComparingSolution, truth, sandbox, TestContext.Current.CancellationToken);
        Assert.True(v.Base.Status == "success", v.Base.Describe());
    }

    [Fact]
    public void RunTimeout_IsTheSumOfTheInputLimits_BoundedByTheCapWhenOneIsSet()
    {
        Assert.Equal(101, MbppPlusBenchmark.RunTimeout(100, null));
        Assert.Equal(61, MbppPlusBenchmark.RunTimeout(100, 60));
        Assert.Equal(11, MbppPlusBenchmark.RunTimeout(10, 60));
        Assert.Equal(60, new MbppPlusOptions { DataDir = "" }.TotalTimeCapSeconds);
    }

    [Fact]
    public async Task TotalTimeCap_EndsARunThatOutlastsIt_AndNoCapLetsTheSameTaskFinish()
    {
        var capped = Bench(cap: 0, plus: false);
        var p = capped.SelectedProblems().Single();
        var sandbox = BubblewrapSandbox.Create();
        var truth = (await capped.EnsureGroundTruthAsync([p], sandbox, TestContext.Current.CancellationToken))[p.TaskId];
        // The module-level sleep is outside every per-input limit: only the whole-run limit (cap 0 → 1 s, +1 s join) ends it.
        string sleeper = "\nimport time\ntime.sleep(4)" + DictComparingSolution;
        var cut = await capped.CheckAsync(p, sleeper, truth, sandbox, TestContext.Current.CancellationToken);
        Assert.True(cut.Base.Status == "timed out", cut.Base.Describe());

        var uncapped = Bench(cap: null, plus: false);
        var right = await uncapped.CheckAsync(p, DictComparingSolution, truth, sandbox, TestContext.Current.CancellationToken);
        Assert.True(right.Base.Status == "success", right.Base.Describe());
    }
}
