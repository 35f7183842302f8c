using CycleQD.Tasks.Mbpp;
using CycleQD.Tasks.Sandbox;
using CycleQD.Tasks.Scripted;
using CycleQD.Testing;

namespace CycleQD.Tasks.Tests;

/// <summary>
/// Completions that try to obtain a verdict without computing the answers, or to end the
/// evaluation: each must fail (base and plus) while the canonical solution still passes.
/// </summary>
public sealed class MbppVerdictForgeryTests
{
    private static MbppPlusBenchmark Bench(params string[] ids) =>
        new(new MbppPlusOptions { DataDir = TestPaths.RequireSharedData(), TaskIds = ids, Sanitize = false });

    private const string FakeVerdict =
        "{\"solution\": \"\", \"base\": {\"status\": \"success\", \"passed\": 1000, \"reason\": \"\"}, \"plus\": {\"status\": \"success\", \"passed\": 1000, \"reason\": \"\"}}";

    /// <summary>Attacks on Mbpp/3 (entry point is_not_prime), by name.</summary>
    private static readonly Dictionary<string, string> AttackCode = new()
    {
        {
            FrameInspection,
            "\nimport sys, os\ndef is_not_prime(n):\n    f = sys._getframe()\n    fds = set(range(64))\n    while f is not None:\n"
            + "        fds |= {v for k, v in f.f_locals.items() if type(v) is int and k.endswith('fd')}\n        f = f.f_back\n"
            + $"    msg = ('\\n@@cycleqd-mbpp-result@@' + {Py(FakeVerdict)} + '\\n').encode()\n"
            + "    frame = b'{\"t\": \"end\", \"k\": \"base\", \"status\": \"exited\", \"n\": 0}\\n'\n"
            + "    for fd in fds:\n        try:\n            os.write(fd, msg + frame + b'{\"status\": \"success\", \"passed\": 5, \"reason\": \"\"}')\n"
            + "        except OSError:\n            pass\n    os._exit(0)\n"
        },
        {
            "the comparison is monkey-patched and the output claims to equal anything",
            "\nimport sys\nclass AlwaysEqual:\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n        return False\n"
            + "def is_not_prime(n):\n    for m in list(sys.modules.values()):\n        for name in ('assert_allclose', 'is_floats', 'judge_kind', 'plain_loads'):\n"
            + "            if hasattr(m, name):\n                setattr(m, name, lambda *a, **k: None)\n    return AlwaysEqual()\n"
        },
        {
            "an output whose pickle names a function to run in the judge",
            "\nimport posix\nclass Payload:\n    def __reduce__(self):\n        return (posix.system, ('echo pwned',))\ndef is_not_prime(n):\n    return Payload()\n"
        },
        {
            "a fake result marker printed on stdout and stderr",
            $"\nimport os, sys\ndef is_not_prime(n):\n    text = '\\n@@cycleqd-mbpp-result@@' + {Py(FakeVerdict)} + '\\n'\n"
            + "    print(text)\n    sys.__stdout__.write(text)\n    os.write(1, text.encode())\n    os.write(2, text.encode())\n    return None\n"
        },
        { "exiting with status 0 before any input is judged", "\nimport sys\nsys.exit(0)\ndef is_not_prime(n):\n    return True\n" },
        { "os._exit(0) in the middle of the inputs", "\nimport os\ndef is_not_prime(n):\n    os._exit(0)\n" },
        { "reading the expected outputs", "\nimport pickle\ndef is_not_prime(n):\n    return pickle.load(open('/expected/expected.pkl', 'rb'))\n" },
    };

    /// <summary>The names of <see cref="AttackCode"/>.</summary>
    public static TheoryData<string> Attacks => new(AttackCode.Keys);

    private const string FrameInspection = "frame inspection finds the result channel and writes a success verdict into it";

    private static string Py(string s) => "'" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal) + "'";

    [Theory]
    [MemberData(nameof(Attacks))]
    public async Task Attack_FailsBaseAndPlus(string name)
    {
        string completion = AttackCode[name];
        var bench = Bench("Mbpp/3");
        var p = bench.SelectedProblems()[0];
        var sandbox = BubblewrapSandbox.Create();
        var truth = (await bench.EnsureGroundTruthAsync([p], sandbox, TestContext.Current.CancellationToken))[p.TaskId];
        var v = await bench.CheckAsync(p, completion, truth, sandbox, TestContext.Current.CancellationToken);
        Assert.True(v.Base.Status != "success", name + ": " + v.Base.Reason);
        Assert.True(v.Plus!.Status != "success", name + ": " + v.Plus.Reason);
        Assert.Equal(0, v.Base.Passed);
        Assert.NotEqual("", v.Base.Reason);
    }

    [Fact]
    public async Task PickledOutputNamingAFunction_IsRefusedByTheJudge()
    {
        var bench = Bench("Mbpp/3");
        var p = bench.SelectedProblems()[0];
        var sandbox = BubblewrapSandbox.Create();
        var truth = (await bench.EnsureGroundTruthAsync([p], sandbox, TestContext.Current.CancellationToken))[p.TaskId];
        var v = await bench.CheckAsync(p, AttackCode.Single(a => a.Key.Contains("pickle", StringComparison.Ordinal)).Value, truth, sandbox, TestContext.Current.CancellationToken);
        Assert.Contains("posix.system cannot be judged", v.Base.Reason);
    }

    [Fact]
    public async Task CanonicalSolution_StillPassesBaseAndPlus()
    {
        var bench = Bench("Mbpp/3");
        var p = bench.SelectedProblems()[0];
        var sandbox = BubblewrapSandbox.Create();
        var truth = (await bench.EnsureGroundTruthAsync([p], sandbox, TestContext.Current.CancellationToken))[p.TaskId];
        var v = await bench.CheckAsync(p, p.CanonicalSolution, truth, sandbox, TestContext.Current.CancellationToken);
        Assert.Equal("success", v.Base.Status);
        Assert.Equal(5, v.Base.Passed);
        Assert.Equal("success", v.Plus!.Status);
        Assert.Equal(103, v.Plus.Passed);
    }

    [Fact]
    public async Task FloodingEveryOutputWithAGibibyte_FailsThatSampleOnly_AndTheEvaluationGoesOn()
    {
        var bench = Bench("Mbpp/2", "Mbpp/3", "Mbpp/4");
        var problems = bench.SelectedProblems();
        var gold = bench.CreateGoldResponder();
        // Mbpp/2: 1 GiB into every descriptor (the output stream among them), deaf to its per-input
        // limit; Mbpp/3: the frame inspection attack; Mbpp/4: the canonical solution.
        string flood = "\nimport os, signal\ndef similar_elements(a, b):\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    chunk = b'x' * (1 << 20)\n    for fd in range(64):\n        try:\n"
                     + "            for _ in range(1024):\n                os.write(fd, chunk)\n        except OSError:\n            pass\n    return tuple(set(a) & set(b))\n";
        string forge = AttackCode[FrameInspection];
        var responder = new ScriptedResponder(req =>
            req.Prompt.Contains("similar_elements", StringComparison.Ordinal) ? flood + "```"
            : req.Prompt.Contains("is_not_prime", StringComparison.Ordinal) ? forge + "```"
            : gold.GenerateAsync([req]).Result[0].Text);
        var report = await bench.EvaluateAsync(responder, null, TestContext.Current.CancellationToken);
        Assert.Equal(3, report.Samples.Count);
        Assert.False(report.Samples[0].Correct, report.Samples[0].Reason);
        Assert.Contains("exceeded their bound", report.Samples[0].Reason);
        Assert.False(report.Samples[1].Correct, report.Samples[1].Reason);
        Assert.True(report.Samples[2].Correct, report.Samples[2].Reason);
        Assert.Equal(1.0 / 3, report.Score, 12);
        Assert.Equal(problems.Count, report.Samples.Count);
    }

    [Fact]
    public async Task CallerCancellation_StillCancelsTheCheck()
    {
        var bench = Bench("Mbpp/3");
        var p = bench.SelectedProblems()[0];
        var sandbox = BubblewrapSandbox.Create();
        var truth = (await bench.EnsureGroundTruthAsync([p], sandbox, TestContext.Current.CancellationToken))[p.TaskId];
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(TimeSpan.FromSeconds(1));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            bench.CheckAsync(p, "\nimport signal, time\ndef is_not_prime(n):\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n    time.sleep(100)\n", truth, sandbox, cts.Token));
    }
}
