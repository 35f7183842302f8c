using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace CycleQD.Testing;

/// <summary>
/// A private redis-server on 127.0.0.1 and a free port, no persistence, for one test; nothing
/// reaches another address. Skips the test when redis-server is not installed (a failure under CI,
/// where ./build.sh setup installs it).
/// </summary>
internal sealed class RedisServer : IDisposable
{
    private Process _process;

    public int Port { get; }

    public string Url => $"redis://127.0.0.1:{Port}";

    private RedisServer(int port)
    {
        Port = port;
        _process = Launch(port);
    }

    public static RedisServer Start()
    {
        MachineRequirement.Require(File.Exists(Binary), $"needs redis-server ({Binary}; ./build.sh setup installs it)");
        return new RedisServer(FreePort());
    }

    private const string Binary = "/usr/bin/redis-server";

    private static Process Launch(int port)
    {
        var psi = new ProcessStartInfo(Binary) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no" })
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        var sw = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var c = new TcpClient();
                c.Connect(IPAddress.Loopback, port);
                return p;
            }
            catch (SocketException) when (sw.Elapsed < TimeSpan.FromSeconds(10) && !p.HasExited)
            {
                Thread.Sleep(20);
            }
        }
    }

    /// <summary>Kills the server (its data is gone: no persistence) and starts a fresh one on the same port.</summary>
    public void Restart(TimeSpan down)
    {
        Stop();
        Thread.Sleep(down);
        _process = Launch(Port);
    }

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

    public void Dispose() => Stop();

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
