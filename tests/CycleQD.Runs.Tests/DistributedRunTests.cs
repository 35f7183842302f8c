using System.Collections.Concurrent;
using CycleQD.Runs.Distributed;
using CycleQD.Testing;
using StackExchange.Redis;

namespace CycleQD.Runs.Tests;

/// <summary>
/// A run whose candidates are scored by workers through Redis gives the run of one process, through
/// dead workers, duplicated results, a restarted coordinator and a restarted Redis.
/// </summary>
public sealed class DistributedRunTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A run that waits for a result nobody sends would wait forever: two minutes is far beyond these runs' seconds.</summary>
    private static Task<T> Within<T>(Task<T> t) => t.WaitAsync(TimeSpan.FromMinutes(2), Ct);

    private static Task Within(Task t) => t.WaitAsync(TimeSpan.FromMinutes(2), Ct);

    private static string Experiment(int generations, int inFlight, double evaluationSeconds = 0) => $"""
        name: dist
        seed: 11
        generations: {generations}
        tasks: [a, b, c]
        model:
          synthetic: {"{"} layers: 2, rows: 24, cols: 16, dtype: bf16, seed: 5, evaluation_seconds: {evaluationSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)} {"}"}
        archive: {"{"} bins: 6 {"}"}
        in_flight: {inFlight}
        """;

    /// <summary>Workers in this process, each as `cycleqd worker` runs them; stopped on dispose.</summary>
    private sealed class Workers : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly List<Task<int>> _tasks = [];
        public ConcurrentQueue<string> Log { get; } = new();

        public Workers(string url, string runDir, int count, TimeSpan? visibility = null)
        {
            for (int i = 0; i < count; i++)
            {
                var o = new WorkerOptions(url, runDir, Name: $"w{i}", VisibilityTimeout: visibility);
                _tasks.Add(Task.Run(() => RunWorker.RunAsync(o, Log.Enqueue, _stop.Token)));
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            foreach (var t in _tasks) Assert.Equal(0, await t);
        }
    }

    private static void OneProcess(string experiment, string runDir)
    {
        using var s = RunSession.Start(experiment, runDir, null, null);
        s.InitializeAsync(Ct).GetAwaiter().GetResult();
        Assert.True(s.RunAsync(Ct).GetAwaiter().GetResult());
    }

    private static async Task Distributed(string experiment, string runDir, string url, int workers, TimeSpan? visibility = null)
    {
        using var s = RunSession.Start(experiment, runDir, null, null, workers: new DistributedOptions(url));
        await using var w = new Workers(url, runDir, workers, visibility);
        await Within(s.InitializeAsync(Ct));
        Assert.True(await Within(s.RunAsync(Ct)));
    }

    [Fact]
    public async Task ThreeWorkers_GiveTheArchiveAndMetricsOfOneProcess_AndNameTheWorkers()
    {
        using var redis = RedisServer.Start();
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiment(12, inFlight: 3));
        OneProcess(exp, dir.File("one"));
        await Distributed(exp, dir.File("three"), redis.Url, 3);
        ResumeTests.AssertSameRun(dir.File("one"), dir.File("three"), 12);
        var workers = File.ReadAllLines(dir.File("three/metrics.jsonl"))
            .Select(l => System.Text.Json.Nodes.JsonNode.Parse(l)!["timing"]!["worker"]!.GetValue<string>()).ToHashSet();
        Assert.Subset(new HashSet<string> { "w0", "w1", "w2" }, workers);
        Assert.False(File.Exists(dir.File("one/distributed.json")));
    }

    [Fact]
    public async Task AWorkerThatDiesHoldingAJob_ItsJobIsTakenOverAfterTheVisibilityTimeout()
    {
        using var redis = RedisServer.Start();
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiment(8, inFlight: 2));
        OneProcess(exp, dir.File("one"));
        string run = dir.File("dist");
        using var s = RunSession.Start(exp, run, null, null, workers: new DistributedOptions(redis.Url));
        var init = Task.Run(() => s.InitializeAsync(Ct), Ct);
        // A worker that takes the first job and dies with it: read, never acknowledged, no heartbeat.
        string key = DistributedRunFile.TryRead(run)!.RunKey;
        using (var mux = await ConnectionMultiplexer.ConnectAsync($"127.0.0.1:{redis.Port}"))
        {
            var db = mux.GetDatabase();
            StreamEntry[] taken = [];
            for (int i = 0; i < 500 && taken.Length == 0; i++)
            {
                taken = await db.StreamReadGroupAsync($"cqd:{key}:jobs", WorkQueue.Group, "ghost", ">", 1);
                if (taken.Length == 0) await Task.Delay(10, Ct);
            }
            Assert.Single(taken);
        }
        await using (var w = new Workers(redis.Url, run, 1, visibility: TimeSpan.FromSeconds(1)))
        {
            await Within(init);
            Assert.True(await Within(s.RunAsync(Ct)));
        }
        ResumeTests.AssertSameRun(dir.File("one"), run, 8);
    }

    [Fact]
    public async Task EveryResultDeliveredTwice_CountsOnce()
    {
        using var redis = RedisServer.Start();
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiment(10, inFlight: 2));
        OneProcess(exp, dir.File("one"));
        string run = dir.File("dist");
        using var s = RunSession.Start(exp, run, null, null, workers: new DistributedOptions(redis.Url));
        string key = DistributedRunFile.TryRead(run)!.RunKey;
        using var stop = new CancellationTokenSource();
        int copied = 0;
        var duplicator = Task.Run(async () =>
        {
            using var mux = await ConnectionMultiplexer.ConnectAsync($"127.0.0.1:{redis.Port}");
            var db = mux.GetDatabase();
            RedisValue position = "0-0";
            var seen = new HashSet<string>();
            while (!stop.IsCancellationRequested)
            {
                foreach (var e in await db.StreamReadAsync($"cqd:{key}:results", position, 100))
                {
                    position = e.Id;
                    string text = e["result"]!;
                    if (seen.Add(text))
                    {
                        await db.StreamAddAsync($"cqd:{key}:results", "result", text);
                        Interlocked.Increment(ref copied);
                    }
                }
                await Task.Delay(2, Ct);
            }
        }, Ct);
        await using (var w = new Workers(redis.Url, run, 2))
        {
            await Within(s.InitializeAsync(Ct));
            Assert.True(await Within(s.RunAsync(Ct)));
        }
        await stop.CancelAsync();
        await duplicator;
        Assert.True(copied >= 10, $"{copied} results were duplicated");
        ResumeTests.AssertSameRun(dir.File("one"), run, 10);
    }

    [Fact]
    public async Task ACoordinatorStoppedMidRun_ResumesWithItsJobsOut_AndGivesTheSameRun()
    {
        using var redis = RedisServer.Start();
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiment(14, inFlight: 3));
        OneProcess(exp, dir.File("one"));
        string run = dir.File("dist");
        await using (var w = new Workers(redis.Url, run, 2))
        {
            using (var s = RunSession.Start(exp, run, null, null, workers: new DistributedOptions(redis.Url)))
            {
                using var cts = new CancellationTokenSource();
                s.Engine.GenerationCompleted += r => { if (r.Generation == 5) cts.Cancel(); };
                await Within(s.InitializeAsync(Ct));
                Assert.False(await Within(s.RunAsync(cts.Token)));
                Assert.Equal(6, s.Engine.NextGeneration);
            }
            using (var s = RunSession.Resume(run, null, workers: new DistributedOptions(redis.Url)))
            {
                await Within(s.InitializeAsync(Ct));
                Assert.True(await Within(s.RunAsync(Ct)));
            }
        }
        ResumeTests.AssertSameRun(dir.File("one"), run, 14);
    }

    [Fact]
    public async Task RedisRestartedMidRun_WithoutItsData_TheRunCompletesUnchanged()
    {
        using var redis = RedisServer.Start();
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiment(16, inFlight: 2, evaluationSeconds: 0.05));
        OneProcess(exp, dir.File("one"));
        string run = dir.File("dist");
        var notices = new ConcurrentQueue<string>();
        using var s = RunSession.Start(exp, run, null, null, notice: notices.Enqueue, workers: new DistributedOptions(redis.Url));
        Task? restart = null;
        s.Engine.GenerationCompleted += r =>
        {
            if (r.Generation == 4) restart = Task.Run(() => redis.Restart(TimeSpan.FromMilliseconds(500)));
        };
        await using (var w = new Workers(redis.Url, run, 2))
        {
            await Within(s.InitializeAsync(Ct));
            Assert.True(await Within(s.RunAsync(Ct)));
        }
        Assert.NotNull(restart);
        await restart;
        ResumeTests.AssertSameRun(dir.File("one"), run, 16);
        Assert.Contains(notices, n => n.Contains("lost the run's queues", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AWorkerOfAnotherBuild_RefusesTheRun_WithBothBuildsNamed()
    {
        using var redis = RedisServer.Start();
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiment(2, inFlight: 1));
        string run = dir.File("dist");
        using (RunSession.Start(exp, run, null, null, workers: new DistributedOptions(redis.Url)))
        {
        }
        var file = DistributedRunFile.TryRead(run)!;
        (file with { Build = "0.0.1+other" }).Write(run);
        var log = new ConcurrentQueue<string>();
        int code = await RunWorker.RunAsync(new WorkerOptions(redis.Url, run, Name: "odd"), log.Enqueue, Ct);
        Assert.Equal(RunWorker.ExitMismatch, code);
        string line = Assert.Single(log, l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.Contains("0.0.1+other", line);
        Assert.Contains(WorkerIdentity.Build, line);
    }

    [Fact]
    public async Task AWorkerThatRebuiltOtherBits_StopsTheRun_NamingBothFingerprints()
    {
        using var redis = RedisServer.Start();
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiment(4, inFlight: 1));
        string run = dir.File("dist");
        using var s = RunSession.Start(exp, run, null, null, workers: new DistributedOptions(redis.Url));
        string key = DistributedRunFile.TryRead(run)!.RunKey;
        using var stop = new CancellationTokenSource();
        // A worker of another make: right scores shape, but a child it built differently.
        var forger = Task.Run(async () =>
        {
            using var mux = await ConnectionMultiplexer.ConnectAsync($"127.0.0.1:{redis.Port}");
            var db = mux.GetDatabase();
            while (!stop.IsCancellationRequested)
            {
                foreach (var e in await db.StreamReadGroupAsync($"cqd:{key}:jobs", WorkQueue.Group, "forger", ">", 10))
                {
                    var job = WorkJob.Parse(e["job"]!);
                    var result = new WorkResult
                    {
                        Run = job.Run, Id = job.Id, Recipe = job.Recipe, Worker = "forger", Scores = [0.5, 0.5, 0.5],
                        ChildFingerprint = job.Kind == "child" ? "00000000000000000000000000000000" : null,
                    };
                    await db.StreamAddAsync($"cqd:{key}:results", "result", result.ToJson());
                    await db.StreamAcknowledgeAsync($"cqd:{key}:jobs", WorkQueue.Group, e.Id);
                }
                await Task.Delay(5, Ct);
            }
        }, Ct);
        await Within(s.InitializeAsync(Ct));
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => Within(s.RunAsync(Ct)));
        Assert.Contains("worker forger rebuilt gen-0 with other bits (fingerprint 00000000000000000000000000000000, this process's ", e.Message);
        await stop.CancelAsync();
        await forger;
    }

    [Fact]
    public void ChildFingerprint_IsTheSameForTheSameBits_AndChangesWithASampledByte()
    {
        var backend = new Cpu.CpuComputeBackend();
        var problem = new Core.Synthetic.SyntheticProblem(["a"], new Core.Synthetic.SyntheticProblemOptions(Layers: 1, Rows: 80, Cols: 64));
        using var a = backend.Upload(problem.BaseModel());
        using var b = backend.Upload(problem.BaseModel());
        Assert.Equal(ChildFingerprint.Of(backend, a), ChildFingerprint.Of(backend, b));
        var bytes = new byte[a.Tensors[0].ByteLength];
        backend.Download(a, 0, bytes);
        bytes[4096 + 3] ^= 1; // inside the sampled 64 bytes of the second 4 KiB block
        var changed = new Core.Compute.InMemoryTensorSource().Add(a.Tensors[0], bytes);
        for (int i = 1; i < a.Tensors.Count; i++)
        {
            var x = new byte[a.Tensors[i].ByteLength];
            backend.Download(a, i, x);
            changed.Add(a.Tensors[i], x);
        }
        using var c = backend.Upload(changed);
        Assert.NotEqual(ChildFingerprint.Of(backend, a), ChildFingerprint.Of(backend, c));
    }

    [Theory]
    [InlineData("redis://h:6379/x", "the database after '/' must be a number")]
    [InlineData("redis://user@h:6379", "expected redis://HOST:PORT[/DB]")]
    [InlineData("redis://h:port", "expected redis://HOST:PORT[/DB]")]
    public void ABadRedisUrl_IsOneClearError(string url, string expected)
    {
        var e = Assert.Throws<Core.ConfigurationException>(() => WorkerUrls.Check(url));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith(url, e.Message);
    }
}
