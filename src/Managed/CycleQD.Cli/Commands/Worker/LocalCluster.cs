using System.Diagnostics;
using CycleQD.Core;
using CycleQD.Cuda;
using CycleQD.Runs.Distributed;

namespace CycleQD.Cli.Commands.Worker;

/// <summary>
/// `--workers local[:N]`: a private redis-server on 127.0.0.1 (a free port, no persistence) and N
/// `cycleqd worker` processes of this same program on this machine; everything is stopped when the
/// run ends. Each worker's output goes to RUN/workers/local-I.log.
/// </summary>
internal sealed class LocalCluster : IDisposable
{
    private readonly PrivateRedisServer _redis;
    private readonly List<Process> _workers = [];
    private readonly Action<string> _notice;

    public string Url => _redis.Url;

    private LocalCluster(PrivateRedisServer redis, Action<string> notice)
    {
        _redis = redis;
        _notice = notice;
    }

    /// <exception cref="ConfigurationException">redis-server is not installed or does not start.</exception>
    public static LocalCluster StartRedis(Action<string> notice)
    {
        string server = PrivateRedisServer.FindBinary()
            ?? throw new ConfigurationException("--workers local needs redis-server (apt-get install redis-server; ./build.sh setup installs it)");
        PrivateRedisServer redis;
        try
        {
            redis = PrivateRedisServer.Start(server);
        }
        catch (InvalidOperationException e)
        {
            throw new ConfigurationException("--workers local: " + e.Message);
        }
        notice($"workers: a private redis-server at {redis.Url}");
        return new LocalCluster(redis, notice);
    }

    /// <summary>Starts <paramref name="count"/> workers (null: one per GPU on a GPU backend, else 1) for the run in <paramref name="run"/>.</summary>
    public void StartWorkers(Runs.RunDirectory run, int? count, string backendName)
    {
        string runDir = run.Path;
        bool gpu = backendName.StartsWith("cuda", StringComparison.Ordinal);
        int gpus = gpu ? Math.Max(1, CudaDeviceProbe.Probe().Devices.Count) : 0;
        int n = count ?? (gpu ? gpus : 1);
        string logs = run.WorkerLogsDirectory;
        Directory.CreateDirectory(logs);
        for (int i = 0; i < n; i++)
        {
            var psi = new ProcessStartInfo(Environment.ProcessPath ?? "cycleqd")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var a in new[] { "worker", "--redis", Url, "--run", runDir, "--device", gpu ? $"cuda:{i % gpus}" : "cpu", "--name", $"local-{i}" })
                psi.ArgumentList.Add(a);
            var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start a worker");
            var log = new StreamWriter(Path.Combine(logs, $"local-{i}.log"), append: true) { AutoFlush = true };
            p.OutputDataReceived += (_, e) => { if (e.Data != null) lock (log) log.WriteLine(e.Data); };
            p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (log) log.WriteLine(e.Data); };
            p.Exited += (_, _) => { lock (log) log.Dispose(); };
            p.EnableRaisingEvents = true;
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            _workers.Add(p);
        }
        _notice($"workers: {n} local worker(s) on {(gpu ? "the GPUs" : "the CPU")}; logs in {logs}");
    }

    public void Dispose()
    {
        foreach (var p in _workers)
        {
            try
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
                p.WaitForExit(5000);
            }
            catch (InvalidOperationException) { }
            p.Dispose();
        }
        _redis.Dispose();
    }
}
