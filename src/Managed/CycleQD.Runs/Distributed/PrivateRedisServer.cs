using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace CycleQD.Runs.Distributed;

/// <summary>
/// A redis-server of this machine's own on 127.0.0.1 and a free port, without persistence (its data
/// goes with it): what <c>--workers local</c> and the tests use. Started when made, ready (accepting
/// connections) when returned, killed when disposed.
/// </summary>
public sealed class PrivateRedisServer : IDisposable
{
    private readonly string _binary;
    private Process _process;

    /// <summary>The port it listens on (127.0.0.1 only).</summary>
    public int Port { get; }

    /// <summary>redis://127.0.0.1:PORT.</summary>
    public string Url => $"redis://127.0.0.1:{Port}";

    private PrivateRedisServer(string binary, int port)
    {
        _binary = binary;
        Port = port;
        _process = Launch(binary, port);
    }

    /// <summary>The redis-server program on PATH (or in /usr/sbin, /usr/bin), or null when there is none.</summary>
    public static string? FindBinary() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':').Concat(["/usr/sbin", "/usr/bin"])
            .Where(d => d.Length > 0).Select(d => Path.Combine(d, "redis-server")).FirstOrDefault(File.Exists);

    /// <summary>Starts <paramref name="binary"/> on a free port and waits (up to 10 s) until it accepts connections.</summary>
    /// <exception cref="InvalidOperationException">it could not start, exited, or did not listen in time (the message says which).</exception>
    public static PrivateRedisServer Start(string binary) => new(binary, FreePort());

    /// <summary>Kills the server (its data is gone) and starts a fresh one on the same port after <paramref name="down"/>.</summary>
    public void Restart(TimeSpan down)
    {
        Stop();
        Thread.Sleep(down);
        _process = Launch(_binary, Port);
    }

    /// <summary>Kills the server.</summary>
    public void Dispose() => Stop();

    private void Stop()
    {
        try
        {
            if (!_process.HasExited) _process.Kill();
            _process.WaitForExit(5000);
        }
        catch (InvalidOperationException) { }
        _process.Dispose();
    }

    private static Process Launch(string binary, int port)
    {
        var psi = new ProcessStartInfo(binary) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no" })
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {binary}");
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (p.HasExited)
            {
                int code = p.ExitCode;
                p.Dispose();
                throw new InvalidOperationException($"{binary} exited ({code}) on port {port}");
            }
            try
            {
                using var c = new TcpClient();
                c.Connect(IPAddress.Loopback, port);
                return p;
            }
            catch (SocketException) when (clock.Elapsed < TimeSpan.FromSeconds(10))
            {
                Thread.Sleep(20);
            }
            catch (SocketException)
            {
                try { p.Kill(); } catch (InvalidOperationException) { }
                p.Dispose();
                throw new InvalidOperationException($"{binary} did not accept connections on 127.0.0.1:{port} within 10 s");
            }
        }
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
