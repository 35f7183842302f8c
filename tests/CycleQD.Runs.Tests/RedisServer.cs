using CycleQD.Runs.Distributed;

namespace CycleQD.Testing;

/// <summary>
/// A private redis-server (<see cref="PrivateRedisServer"/>: 127.0.0.1, a free port, no persistence)
/// for one test; nothing reaches another address. Skips the test when redis-server is not installed
/// (a failure under CI, where ./build.sh setup installs it).
/// </summary>
internal sealed class RedisServer : IDisposable
{
    private const string Binary = "/usr/bin/redis-server";
    private readonly PrivateRedisServer _server;

    private RedisServer(PrivateRedisServer server) => _server = server;

    public int Port => _server.Port;

    public string Url => _server.Url;

    public static RedisServer Start()
    {
        MachineRequirement.Require(File.Exists(Binary), $"needs redis-server ({Binary}; ./build.sh setup installs it)");
        return new RedisServer(PrivateRedisServer.Start(Binary));
    }

    /// <summary>Kills the server (its data is gone: no persistence) and starts a fresh one on the same port.</summary>
    public void Restart(TimeSpan down) => _server.Restart(down);

    public void Dispose() => _server.Dispose();
}
