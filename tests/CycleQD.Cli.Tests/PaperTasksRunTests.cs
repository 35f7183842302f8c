using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using CycleQD.Cli.Commands.Run;
using CycleQD.Runs;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

/// <summary>
/// `cycleqd run` on the paper's tasks (MBPP+, AgentBench DB and OS) with the real harnesses
/// (bubblewrap sandbox, private MariaDB, bash in the sandbox) and the TinySkills models.
/// </summary>
public class PaperTasksRunTests
{
    private static string Experiment(string data, string extra, int generations = 4) => $"""
        name: paper-tasks
        seed: 2
        generations: {generations}
        tasks: [mbpp, agentbench_db, agentbench_os]
        model:
          base: {TestPaths.RepoRoot}/models/tinyskills/base
          experts:
            mbpp: {TestPaths.RepoRoot}/models/tinyskills/expert-code
            agentbench_db: {TestPaths.RepoRoot}/models/tinyskills/expert-db
            agentbench_os: {TestPaths.RepoRoot}/models/tinyskills/expert-os
        archive: {"{"} bins: 4, bounds: {"{"} mbpp: [0, 1], agentbench_db: [0, 1], agentbench_os: [0, 1] {"}"} {"}"}
        evaluation:
          data: {data}
          limit: 4
          agentbench_os: {"{"} repeats: 1 {"}"}
        {extra}
        """;

    private const string StandIn = """
          responder: scripted:weight-keyed-gold
        final_merge: { grid: [0.5, 1.0], rounds: 0 }
        report: { task_arithmetic_lambdas: [1.0] }
        """;

    /// <summary>
    /// The stand-in responder gives gold answers to a weight-dependent subset, so children score
    /// differently and enter the archives on real harness verdicts. A run killed with SIGKILL resumes
    /// from its last committed generation and finishes, final stage included.
    /// </summary>
    /// <remarks>
    /// Byte equality with an uninterrupted run is not asserted here: real harness verdicts depend on
    /// wall-clock limits (MBPP+'s per-input limits from measured reference times, AgentBench OS's turn
    /// timeouts), as the reference's do, so a loaded machine can flip a verdict between two runs.
    /// Exact resume is asserted where scores are a pure function of the weights (ResumeTests,
    /// RunResumeCommandTests, and the TinySkills runs).
    /// </remarks>
    [Fact]
    public void Run_StandInResponder_ScoresEveryTask_InsertsChildren_ResumesAfterSigkill()
    {
        string data = TestPaths.RequireSharedData();
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment(data, StandIn));
        var straight = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("straight"), "--device", "cpu");
        Assert.True(straight.ExitCode == 0, straight.Err + straight.Out);
        Assert.Contains("stand-in responder scripted:weight-keyed-gold", straight.Out);

        var lines = File.ReadAllLines(dir.File("straight/metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToArray();
        Assert.Equal(4, lines.Length);
        foreach (var l in lines)
            foreach (string task in new[] { "mbpp", "agentbench_db", "agentbench_os" })
            {
                Assert.True(l["evaluation"]![task]!["model_calls"]!.GetValue<int>() >= 2, task);
                Assert.NotNull(l["timing"]!["tasks"]![task]!["harness_s"]);
            }
        var scores = lines.SelectMany(l => l["scores"]!.AsObject().Select(p => p.Value!.GetValue<double>())).ToArray();
        Assert.Contains(scores, s => s > 0);
        Assert.True(scores.Distinct().Count() > 1, "the stand-in must score candidates differently");
        Assert.Contains(lines, l => l["cells_improved"]!.GetValue<int>() > 0);

        // The splits: disjoint halves, fixed in the run directory.
        var splits = JsonNode.Parse(File.ReadAllText(dir.File("straight/splits.json")))!["tasks"]!;
        foreach (string task in new[] { "mbpp", "agentbench_db", "agentbench_os" })
        {
            var train = splits[task]!["search_ids"]!.AsArray().Select(x => x!.GetValue<string>()).ToArray();
            var test = splits[task]!["report_ids"]!.AsArray().Select(x => x!.GetValue<string>()).ToArray();
            Assert.Equal("train", splits[task]!["search"]!.GetValue<string>());
            Assert.Empty(train.Intersect(test));
            Assert.True(train.Length > 50 && test.Length > 50, task);
        }
        var environment = JsonNode.Parse(File.ReadAllText(dir.File("straight/environment.json")))!;
        Assert.StartsWith("sha256:", environment["agentbench_os"]!["fingerprint"]!.GetValue<string>());
        var report = JsonNode.Parse(File.ReadAllText(dir.File("straight/report.json")))!;
        Assert.True(report["complete"]!.GetValue<bool>());
        Assert.Contains("Scored by the stand-in responder", File.ReadAllText(dir.File("straight/summary.md")));

        string killed = dir.File("killed");
        string[] committed;
        using (var p = Process.Start(RunResumeCommandTests.CycleqdProcess("run", dir.File("exp.yaml"), "--out", killed, "--device", "cpu"))!)
        {
            string metrics = Path.Combine(killed, "metrics.jsonl");
            var deadline = DateTime.UtcNow.AddSeconds(600);
            while (!p.HasExited && DateTime.UtcNow < deadline && (!File.Exists(metrics) || File.ReadAllLines(metrics).Length < 1))
                Thread.Sleep(5);
            if (p.HasExited) Assert.Fail("the run finished before it could be killed: " + p.StandardError.ReadToEnd());
            p.Kill(); // SIGKILL
            p.WaitForExit();
            // What the checkpoint covers survives the kill; a line appended after it is cut on resume.
            var checkpoint = JsonNode.Parse(File.ReadAllText(Path.Combine(killed, "state/checkpoint.json")))!;
            long covered = checkpoint["metrics_length"]!.GetValue<long>();
            committed = System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(metrics), 0, (int)covered).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        }
        var resumed = CliRunner.Run("resume", killed, "--device", "cpu");
        Assert.True(resumed.ExitCode == 0, resumed.Err + resumed.Out);
        var after = File.ReadAllLines(Path.Combine(killed, "metrics.jsonl"));
        Assert.Equal(Enumerable.Range(0, 4), after.Select(l => JsonNode.Parse(l)!["generation"]!.GetValue<int>()));
        Assert.Equal(committed, after.Take(committed.Length));
        Assert.True(JsonNode.Parse(File.ReadAllText(Path.Combine(killed, "report.json")))!["complete"]!.GetValue<bool>());
        Assert.True(File.Exists(Path.Combine(killed, "final/model.safetensors")));
    }

    /// <summary>The model itself generates on every task; the counts land in metrics.jsonl.</summary>
    [Fact]
    public void Run_Model_GeneratesOnEveryPaperTask()
    {
        string data = TestPaths.RequireSharedData();
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment(data, "final_merge: { enabled: false }", generations: 1).Replace("limit: 4", "limit: 2"));
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--device", "cpu");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        var line = JsonNode.Parse(File.ReadAllLines(dir.File("run/metrics.jsonl")).Single())!;
        foreach (string task in new[] { "mbpp", "agentbench_db", "agentbench_os" })
        {
            Assert.True(line["evaluation"]![task]!["generated_tokens"]!.GetValue<long>() > 0, task);
            Assert.True(line["timing"]!["tasks"]![task]!["generate_s"]!.GetValue<double>() > 0, task);
        }
    }

    [Fact]
    public void DryRun_PrintsCosts_WritesNothing()
    {
        string data = TestPaths.RequireSharedData();
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment(data, StandIn));
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--dry-run");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        Assert.False(Directory.Exists(dir.File("run")));
        Assert.Contains("nothing written", r.Out);
        // limit 4: MBPP one prompt each (4), DB 6 rounds (24), OS 6 rounds × 1 repeat (24), 512 new tokens each.
        Assert.Matches(@"mbpp\s+train\s+4\s+test \(\d+\)\s+4\s+2,048", r.Out);
        Assert.Matches(@"agentbench_db\s+train\s+4\s+test \(\d+\)\s+24\s+12,288", r.Out);
        Assert.Contains("search: 7 evaluations (3 experts + 4 children)", r.Out);
        Assert.Contains("per stored elite", r.Out);
    }

    private static string PlanExperiment(string dir, string extra = "")
    {
        string m = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        string path = Path.Combine(dir, "exp.yaml");
        File.WriteAllText(path, $"""
            name: plan
            tasks: [tinyskills/code, tinyskills/db]
            model:
              base: {m}/base
              experts:
                tinyskills/code: {m}/expert-code
                tinyskills/db: {m}/expert-db
            evaluation: {"{"} tinyskills: {m} {"}"}
            {extra}
            """);
        return path;
    }

    [Fact]
    public void DryRun_GaussianMutationOnAGpu_SaysTheNoiseIsDrawnOnTheHost()
    {
        using var dir = new TempDir();
        var o = new StringWriter();
        Assert.Equal(0, RunDryRun.Execute(PlanExperiment(dir.Path, "mutation: {kind: gaussian, sigma: 0.01}"), 3, null, o, device: ComputeDevice.Cuda, gpu: () => ("Test GPU", 1L << 40)));
        Assert.Contains("gpu: Gaussian mutation draws its noise on the host (the CPU backend's code, 4 bytes uploaded per mutated weight) and adds it on the GPU: bit-identical to --device cpu", o.ToString());
        Assert.DoesNotContain("CPU only", o.ToString());
    }

    [Theory]
    [InlineData(1L << 20, "does not fit", "does not fit", "gpu: DOES NOT FIT in either mode")]
    [InlineData(1L << 40, "fits", "fits", "gpu: the run keeps its weight sets resident")]
    public void DryRun_OnAGpu_ShowsBothPlans_AgainstTheCardsFreeMemory_AndTheChoice(long free, string resident, string streamed, string choice)
    {
        using var dir = new TempDir();
        var o = new StringWriter();
        Assert.Equal(0, RunDryRun.Execute(PlanExperiment(dir.Path), 3, null, o, device: ComputeDevice.Cuda, gpu: () => ("Test GPU", free)));
        string text = o.ToString();
        long set;
        using (var m = CycleQD.Tensors.SafetensorsModel.Open(Path.Combine(TestPaths.RepoRoot, "models", "tinyskills", "base")))
            set = m.Tensors.Sum(t => t.ByteLength);
        string sets = (6 * set / (double)(1L << 20)).ToString("0.#", CultureInfo.InvariantCulture);
        var lines = text.Split('\n');
        var r = lines.Single(l => l.StartsWith("gpu memory, resident ", StringComparison.Ordinal));
        Assert.Contains($"6 weight sets (base, 2 experts, child, two parents) {sets} MiB", r);
        Assert.Contains("on Test GPU with ", r);
        Assert.EndsWith(": " + resident, r.TrimEnd());
        var st = lines.Single(l => l.StartsWith("gpu memory, streamed ", StringComparison.Ordinal));
        string child = (set / (double)(1L << 20)).ToString("0.#", CultureInfo.InvariantCulture);
        Assert.Contains($"1 child(ren) {child} MiB", st);
        Assert.EndsWith(": " + streamed, st.TrimEnd());
        Assert.Contains(lines, l => l.StartsWith(choice, StringComparison.Ordinal));
        Assert.Contains("gpu memory, final stage: base, 2 experts, up to ", text);
    }

    [Fact]
    public void DryRun_CudaWithoutAGpu_SaysTheRunWouldStop_AndPlansForAnH100()
    {
        using var dir = new TempDir();
        string exp = PlanExperiment(dir.Path);
        var o = new StringWriter();
        Assert.Equal(0, RunDryRun.Execute(exp, 3, null, o, device: ComputeDevice.Cuda, gpu: () => null));
        Assert.Contains("gpu: --device cuda needs a usable GPU and this machine has none", o.ToString());
        Assert.Contains("on an 80 GB card (79.65 GiB; no usable GPU here): fits", o.ToString());
        o = new StringWriter();
        Assert.Equal(0, RunDryRun.Execute(exp, 3, null, o, device: ComputeDevice.Cpu, gpu: () => throw new InvalidOperationException("not asked")));
        Assert.DoesNotContain("gpu", o.ToString());
    }

    [Fact]
    public void Run_TaskEnvironmentDoesNotStart_OneErrorLine_NothingWritten()
    {
        string data = TestPaths.RequireSharedData();
        using var dir = new TempDir();
        string exp = Experiment(data, "  agentbench_db: { connection: \"Server=" + dir.File("no.sock") + ";Protocol=Unix;User ID=root\" }")
            .Replace("  agentbench_os: { repeats: 1 }\n", "  agentbench_os: { repeats: 1 }\n");
        File.WriteAllText(dir.File("exp.yaml"), exp.Replace("evaluation:\n", "evaluation:\n"));
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"));
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        string err = r.Err.Trim();
        Assert.StartsWith("error: task agentbench_db: its environment does not start:", err);
        Assert.DoesNotContain('\n', err);
        Assert.False(Directory.Exists(dir.File("run")));
    }

    [Fact]
    public void Run_SearchOnTest_RefusedUnlessSaidExplicitly()
    {
        string data = TestPaths.RequireSharedData();
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment(data, "  split: test"));
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--dry-run");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Contains("evaluation.split: 'test' makes the search select on the test data", r.Err);
        File.WriteAllText(dir.File("exp.yaml"), Experiment(data, "  split: test\n  select_on_test: true"));
        r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--dry-run");
        Assert.True(r.ExitCode == 0, r.Err);
    }

    /// <summary>`eval` and `run` score a model through the same catalog and splits: same number.</summary>
    [Fact]
    public void EvalAndRun_SameModelAndSplit_SameScore()
    {
        string data = TestPaths.RequireSharedData();
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), $"""
            name: same
            seed: 1
            tasks: [tinyskills/code, tinyskills/db]
            model:
              base: {TestPaths.RepoRoot}/models/tinyskills/base
              experts:
                tinyskills/code: {TestPaths.RepoRoot}/models/tinyskills/expert-code
                tinyskills/db: {TestPaths.RepoRoot}/models/tinyskills/expert-db
            evaluation: {"{"} tinyskills: {TestPaths.RepoRoot}/models/tinyskills, limit: 40 {"}"}
            final_merge: {"{"} enabled: false {"}"}
            """);
        var run = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--generations", "0");
        Assert.True(run.ExitCode == 0, run.Err + run.Out);
        var checkpoint = JsonNode.Parse(File.ReadAllText(dir.File("run/state/checkpoint.json")))!;
        var expert = checkpoint["experts"]!.AsArray().First(e => e!["name"]!.GetValue<string>() == "tinyskills/code")!;
        double runScore = expert["scores"]![0]!.GetValue<double>();

        var eval = CliRunner.Run("eval", "--task", "tinyskills/code", "--split", "valid", "--limit", "40",
            "--model", $"{TestPaths.RepoRoot}/models/tinyskills/expert-code", "--data", data, "--output", dir.File("e.jsonl"));
        Assert.True(eval.ExitCode == 0, eval.Err + eval.Out);
        var m = System.Text.RegularExpressions.Regex.Match(eval.Out, @"score: ([0-9.]+) \((\d+)/(\d+)\)");
        Assert.True(m.Success, eval.Out);
        Assert.Equal(runScore, double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), 6);
        Assert.True(runScore > 0, "the code expert answers some of its own prompts");
    }
}
