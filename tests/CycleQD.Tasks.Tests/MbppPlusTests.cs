using CycleQD.Tasks.Mbpp;
using CycleQD.Tasks.Prompts;
using CycleQD.Tasks.Scripted;
using CycleQD.Testing;

namespace CycleQD.Tasks.Tests;

public sealed class MbppPlusTests
{
    private static MbppPlusBenchmark Bench(int? limit = null, IReadOnlyList<string>? ids = null, bool sanitize = true) =>
        new(new MbppPlusOptions { DataDir = TestPaths.RequireSharedData(), Limit = limit, TaskIds = ids, Sanitize = sanitize });

    [Fact]
    public void Prompt_ForMbpp2_IsTheReferenceString()
    {
        var bench = Bench(ids: ["Mbpp/2"]);
        TestPaths.RequireSharedData("mbpp", "MbppPlus-v0.1.0.jsonl");
        var prompts = PromptLibrary.Load(Path.Combine(TestPaths.RequireSharedData(), "cycleqd_prompts.json"));
        string expected = "You are an exceptionally intelligent coding assistant that consistently delivers accurate and reliable responses to user instructions.\n\n@@ Instruction:\nWrite a function to find the shared elements from the given two lists. Your code should satisfy the following assertion:\n```python\nassert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n```\n\n@@ Response:```python";
        Assert.Equal(expected, bench.PromptFor(bench.SelectedProblems()[0], prompts));
    }

    [Fact]
    public void CompletionBody_StopsAtTheFirstFence()
    {
        Assert.Equal("\ndef f():\n    return 1\n", MbppPlusBenchmark.CompletionBody("\ndef f():\n    return 1\n```\nExplanation"));
        Assert.Equal("abc", MbppPlusBenchmark.CompletionBody("abc"));
    }

    [Fact]
    public async Task Sanitizer_KeepsTheEntryPointAndItsHelpers_AndDropsTestCode()
    {
        string code = "\"\"\"\nWrite f.\nassert f(1) == 2\n\"\"\"\nimport math\ndef helper(x):\n    return x\n\ndef f(a):\n    return helper(a) + 1\nprint(f(1))\nassert f(1) == 2\n";
        string s = await MbppPlusBenchmark.SanitizeAsync(code, "f", TestContext.Current.CancellationToken);
        Assert.Contains("import math", s);
        Assert.Contains("def helper(x):", s);
        Assert.Contains("def f(a):\n    return helper(a) + 1", s);
        Assert.DoesNotContain("print", s);
        Assert.DoesNotContain("assert f(1) == 2\n", s.Replace("\"\"\"\nWrite f.\nassert f(1) == 2\n\"\"\"", "", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Sanitizer_DropsABodyWithoutAFourSpaceReturn_AndWidensThreeSpaceIndents()
    {
        // The 4-space "return" test runs before the 3-space fix, so 2- and 3-space bodies are both dropped.
        Assert.Equal("", await MbppPlusBenchmark.SanitizeAsync("def f(a):\n  return a\n", "f", TestContext.Current.CancellationToken));
        Assert.Equal("", await MbppPlusBenchmark.SanitizeAsync("def f(a):\n   return a\n", "f", TestContext.Current.CancellationToken));
        Assert.Equal("def f(a):\n    x = a\n    return x", await MbppPlusBenchmark.SanitizeAsync("def f(a):\n   x = a\n    return x\n", "f", TestContext.Current.CancellationToken));
    }

    /// <summary>Tasks whose canonical entry point has no line with a 4-space "return " (2-space or tab indents).</summary>
    private static HashSet<string> WipedBySanitizer(IEnumerable<MbppProblem> problems) =>
        problems.Where(p =>
        {
            var pieces = System.Text.RegularExpressions.Regex.Split("\n" + (p.Prompt + "\n" + p.CanonicalSolution).Trim(), "def " + p.EntryPoint + @"\s*\(");
            return !pieces.Skip(1).Any(x => x.Split("\ndef")[0].Contains("    return ", StringComparison.Ordinal));
        }).Select(p => p.TaskId).ToHashSet();

    [Fact]
    public async Task GoldResponder_Unsanitized_PassesBaseAndPlusOnTheFirst20Tasks()
    {
        var bench = Bench(limit: 20, sanitize: false);
        var gold = bench.CreateGoldResponder();
        var report = await bench.EvaluateAsync(gold, null, TestContext.Current.CancellationToken);
        Assert.Equal([20], gold.BatchSizes);
        Assert.All(report.Samples, s => Assert.True(s.Correct, s.Id + ": " + s.Reason));
        Assert.Equal(1.0, report.Score);
        Assert.All(report.Samples, s => Assert.True(s.Reason.Contains("plus: success", StringComparison.Ordinal), s.Id + ": " + s.Reason));
        Assert.Equal(1.0, report.Metrics["mbpp_plus_pass@1"]);
    }

    [Fact]
    public async Task GoldResponder_Sanitized_FailsExactlyTheCanonicalSolutionsWithoutAFourSpaceReturn()
    {
        var bench = Bench(limit: 20);
        var report = await bench.EvaluateAsync(bench.CreateGoldResponder(), null, TestContext.Current.CancellationToken);
        var wiped = WipedBySanitizer(bench.SelectedProblems());
        Assert.NotEmpty(wiped);
        foreach (var s in report.Samples)
            Assert.True(s.Correct == !wiped.Contains(s.Id), s.Id + ": " + s.Reason);
        Assert.Equal((20.0 - wiped.Count) / 20, report.Score, 12);
    }

    [Fact]
    public async Task HostileCanonicalSolution_FailsItsOwnTask_AndTheEvaluationGoesOn()
    {
        using var tmp = new TempDir();
        // The sandboxes' uids read the cached expected outputs below it.
        File.SetUnixFileMode(tmp.Path, (UnixFileMode)0b111_101_101);
        string data = TestPaths.RequireSharedData();
        Directory.CreateDirectory(tmp.File("data/mbpp"));
        File.Copy(Path.Combine(data, "cycleqd_prompts.json"), tmp.File("data/cycleqd_prompts.json"));
        // Mbpp/3's canonical solution kills its own process (and prints a gibibyte first); Mbpp/6's is left as it is.
        var lines = File.ReadLines(Path.Combine(data, "mbpp", "MbppPlus-v0.1.0.jsonl")).Take(4).Where(l => l.Contains("\"Mbpp/3\"", StringComparison.Ordinal) || l.Contains("\"Mbpp/6\"", StringComparison.Ordinal)).ToList();
        var hostile = System.Text.Json.Nodes.JsonNode.Parse(MbppProblem.WithoutNonFiniteNumbers(lines[0]))!;
        Assert.Equal("Mbpp/3", (string?)hostile["task_id"]);
        hostile["canonical_solution"] = "\nimport os, sys\ndef is_not_prime(n):\n    sys.stdout.write('x' * (1 << 30))\n    os.kill(os.getpid(), 9)\n";
        await File.WriteAllLinesAsync(tmp.File("data/mbpp/MbppPlus-v0.1.0.jsonl"), [hostile.ToJsonString(), lines[1]], TestContext.Current.CancellationToken);
        var bench = new MbppPlusBenchmark(new MbppPlusOptions { DataDir = tmp.File("data"), CacheDir = tmp.File("cache"), Sanitize = false });

        var report = await bench.EvaluateAsync(bench.CreateGoldResponder(), null, TestContext.Current.CancellationToken);

        Assert.Equal(["Mbpp/3", "Mbpp/6"], report.Samples.Select(s => s.Id));
        Assert.False(report.Samples[0].Correct);
        Assert.Contains("the expected outputs could not be computed", report.Samples[0].Reason);
        Assert.True(report.Samples[1].Correct, report.Samples[1].Reason);
        await Assert.ThrowsAsync<InvalidOperationException>(() => bench.EnsureGroundTruthAsync(bench.SelectedProblems(), CycleQD.Tasks.Sandbox.BubblewrapSandbox.Create(), TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task WrongAndSlowAndCrashingSolutions_Fail()
    {
        var bench = Bench(ids: ["Mbpp/3"]);
        var p = bench.SelectedProblems()[0];
        var sandbox = CycleQD.Tasks.Sandbox.BubblewrapSandbox.Create();
        var truth = (await bench.EnsureGroundTruthAsync([p], sandbox, TestContext.Current.CancellationToken))[p.TaskId];
        var wrong = await bench.CheckAsync(p, $"\ndef {p.EntryPoint}(n):\n    return n == 4\n", truth, sandbox, TestContext.Current.CancellationToken);
        Assert.Equal("failed", wrong.Base.Status);
        var slow = await bench.CheckAsync(p, $"\ndef {p.EntryPoint}(n):\n    while True: pass\n    return 1\n", truth, sandbox, TestContext.Current.CancellationToken);
        Assert.Equal("failed", slow.Base.Status);
        Assert.Contains("limit", slow.Base.Reason);
        var crash = await bench.CheckAsync(p, $"\ndef {p.EntryPoint}(n):\n    return 1 // 0\n", truth, sandbox, TestContext.Current.CancellationToken);
        Assert.Contains("ZeroDivisionError", crash.Base.Reason);
        var right = await bench.CheckAsync(p, p.CanonicalSolution, truth, sandbox, TestContext.Current.CancellationToken);
        Assert.Equal("success", right.Base.Status);
    }
}
