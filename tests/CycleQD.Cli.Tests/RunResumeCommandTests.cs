using System.Diagnostics;
using System.Text.Json.Nodes;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

public class RunResumeCommandTests
{
    private const string Experiment = """
        name: kill-test
        seed: 11
        generations: 40
        tasks: [a, b, c]
        model:
          synthetic: { layers: 2, rows: 24, cols: 16, dtype: bf16, seed: 5 }
        archive: { bins: 6 }
        """;

    internal static string[] MetricsWithoutTiming(string runDir) =>
        File.ReadAllLines(Path.Combine(runDir, "metrics.jsonl")).Select(l =>
        {
            var o = JsonNode.Parse(l)!.AsObject();
            Assert.True(o.Remove("timing"));
            return o.ToJsonString();
        }).ToArray();

    [Fact]
    public void Run_SyntheticExperiment_WritesRunDirectoryAndSummary()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment);
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--generations", "6");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        Assert.Contains("gen 6/6", r.Out);
        foreach (var f in new[] { "experiment.yaml", "run.json", "state/checkpoint.json", "archive.json", "metrics.jsonl", "summary.md" })
            Assert.True(File.Exists(Path.Combine(dir.File("run"), f)), f);
        Assert.Equal(6, File.ReadAllLines(dir.File("run/metrics.jsonl")).Length);
    }

    [Fact]
    public void Run_BadExperiment_OneErrorLine()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment.Replace("bins: 6", "bins: 0"));
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"));
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Equal($"error: {dir.File("exp.yaml")}: archive.bins = 0, must be at least 1", r.Err.Trim());
    }

    [Fact]
    public void Resume_NotARunDirectory_OneErrorLine()
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("resume", dir.Path);
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Equal($"error: {dir.Path}: not a run directory (no run.json)", r.Err.Trim());
    }

    /// <summary>
    /// A child cycleqd process killed with SIGKILL at an arbitrary generation, then resumed, ends
    /// byte-identical to an uninterrupted run.
    /// </summary>
    [Theory]
    [InlineData(3)]
    [InlineData(17)]
    public void Resume_AfterSigkill_IdenticalToUninterruptedRun(int killAfterLines)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment);
        var straight = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("straight"));
        Assert.True(straight.ExitCode == 0, straight.Err);

        string killed = dir.File("killed");
        var psi = CycleqdProcess("run", dir.File("exp.yaml"), "--out", killed);
        using (var p = Process.Start(psi)!)
        {
            string metrics = Path.Combine(killed, "metrics.jsonl");
            var deadline = DateTime.UtcNow.AddSeconds(120);
            while (!p.HasExited && DateTime.UtcNow < deadline &&
                   (!File.Exists(metrics) || File.ReadAllLines(metrics).Length < killAfterLines))
                Thread.Sleep(2);
            if (p.HasExited) Assert.Fail("the run finished before it could be killed: " + p.StandardError.ReadToEnd());
            p.Kill(); // SIGKILL on Unix
            p.WaitForExit();
        }
        int linesAtKill = File.ReadAllLines(Path.Combine(killed, "metrics.jsonl")).Length;
        Assert.InRange(linesAtKill, killAfterLines, 39);

        var resumed = CliRunner.Run("resume", killed);
        Assert.True(resumed.ExitCode == 0, resumed.Err + resumed.Out);
        Assert.Equal(File.ReadAllBytes(dir.File("straight/archive.json")), File.ReadAllBytes(Path.Combine(killed, "archive.json")));
        Assert.Equal(MetricsWithoutTiming(dir.File("straight")), MetricsWithoutTiming(killed));
    }

    // SIGTERM only: a shell starts background jobs with SIGINT ignored and the runtime keeps that
    // disposition, so a SIGINT test would depend on how the test run was launched. Ctrl-C in a
    // terminal goes through Console.CancelKeyPress into the same cancellation.
    [Theory]
    [InlineData("TERM")]
    public void Run_InterruptSignal_StopsCleanlyAndResumesIdentically(string signal)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment);
        var straight = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("straight"));
        Assert.True(straight.ExitCode == 0, straight.Err);

        string stopped = dir.File("stopped");
        using (var p = Process.Start(CycleqdProcess("run", dir.File("exp.yaml"), "--out", stopped))!)
        {
            string metrics = Path.Combine(stopped, "metrics.jsonl");
            var deadline = DateTime.UtcNow.AddSeconds(120);
            while (!p.HasExited && DateTime.UtcNow < deadline && (!File.Exists(metrics) || File.ReadAllLines(metrics).Length < 5))
                Thread.Sleep(2);
            if (p.HasExited) Assert.Fail("the run finished before the signal: " + p.StandardError.ReadToEnd());
            using (var kill = Process.Start("kill", ["-" + signal, p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) kill.WaitForExit();
            Assert.True(p.WaitForExit(60_000), "no exit after the signal");
            string output = p.StandardOutput.ReadToEnd();
            Assert.True(p.ExitCode == 130, $"exit code {p.ExitCode}: {output} {p.StandardError.ReadToEnd()}");
            Assert.Contains("(checkpoint saved); continue with: cycleqd resume", output);
        }
        int done = File.ReadAllLines(Path.Combine(stopped, "metrics.jsonl")).Length;
        Assert.InRange(done, 5, 39);
        var resumed = CliRunner.Run("resume", stopped);
        Assert.True(resumed.ExitCode == 0, resumed.Err + resumed.Out);
        Assert.Equal(File.ReadAllBytes(dir.File("straight/archive.json")), File.ReadAllBytes(Path.Combine(stopped, "archive.json")));
        Assert.Equal(MetricsWithoutTiming(dir.File("straight")), MetricsWithoutTiming(stopped));
    }

    internal static ProcessStartInfo CycleqdProcess(params string[] args)
    {
        // The CLI's build output sits beside the test's (the project reference copies cycleqd.dll).
        string dll = Path.Combine(AppContext.BaseDirectory, "cycleqd.dll");
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h : "dotnet";
        var psi = new ProcessStartInfo(dotnet) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return psi;
    }
}
