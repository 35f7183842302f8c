using System.Diagnostics;
using System.Globalization;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

/// <summary>
/// A distributed run with real processes: `cycleqd worker` killed with SIGKILL in the middle of a
/// job, then the coordinator killed with SIGKILL; `resume --workers` ends with the archive and
/// metrics of a one-process run.
/// </summary>
public class WorkerProcessTests
{
    private const string Experiment = """
        name: dist-cli
        seed: 4
        generations: 24
        tasks: [a, b, c]
        model:
          synthetic: { layers: 2, rows: 24, cols: 16, dtype: bf16, seed: 5, evaluation_seconds: 0.3 }
        archive: { bins: 6 }
        in_flight: 2
        """;

    private static Process Start(params string[] args)
    {
        var p = Process.Start(RunResumeCommandTests.CycleqdProcess(args))!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    private static int Lines(string path) => File.Exists(path) ? File.ReadAllLines(path).Length : 0;

    private static void WaitFor(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail("timed out waiting until " + what);
            Thread.Sleep(5);
        }
    }

    [Fact]
    public void KillNineOfAWorkerMidJob_AndOfTheCoordinator_ThenResume_GiveTheOneProcessRun()
    {
        using var redis = RedisServer.Start();
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Experiment);
        var straight = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("straight"));
        Assert.True(straight.ExitCode == 0, straight.Err);

        string run = dir.File("dist"), metrics = Path.Combine(run, "metrics.jsonl");
        var workers = new List<Process>();
        try
        {
            // The doomed worker: killed while it holds a job; its job must go to the other one.
            var doomed = Start("worker", "--redis", redis.Url, "--run", run, "--name", "doomed", "--visibility-timeout", "2");
            workers.Add(doomed);
            workers.Add(Start("worker", "--redis", redis.Url, "--run", run, "--name", "steady", "--visibility-timeout", "2"));
            using (var coordinator = Start("run", dir.File("exp.yaml"), "--out", run, "--workers", redis.Url))
            {
                WaitFor(() => Lines(metrics) >= 4 || coordinator.HasExited, "4 generations are committed");
                // Killed while it holds a job it has read and not acknowledged.
                string key = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(run, "distributed.json")))!["run_key"]!.GetValue<string>();
                using (var mux = StackExchange.Redis.ConnectionMultiplexer.Connect($"127.0.0.1:{redis.Port}"))
                {
                    var db = mux.GetDatabase();
                    WaitFor(() => db.StreamPendingMessages($"cqd:{key}:jobs", "workers", 1, "doomed").Length > 0 || coordinator.HasExited, "the doomed worker holds a job");
                }
                doomed.Kill();
                WaitFor(() => Lines(metrics) >= 12 || coordinator.HasExited, "12 generations are committed");
                Assert.False(coordinator.HasExited, "the run ended before the coordinator was killed");
                coordinator.Kill();
                coordinator.WaitForExit();
            }
            int done = Lines(metrics);
            Assert.InRange(done, 12, 23);
            var resumed = CliRunner.Run("resume", run, "--workers", redis.Url);
            Assert.True(resumed.ExitCode == 0, resumed.Err + resumed.Out);
        }
        finally
        {
            foreach (var w in workers)
            {
                if (!w.HasExited) w.Kill();
                w.WaitForExit();
                w.Dispose();
            }
        }
        Assert.Equal(File.ReadAllBytes(dir.File("straight/archive.json")), File.ReadAllBytes(Path.Combine(run, "archive.json")));
        Assert.Equal(RunResumeCommandTests.MetricsWithoutTiming(dir.File("straight")), RunResumeCommandTests.MetricsWithoutTiming(run));
    }
}
