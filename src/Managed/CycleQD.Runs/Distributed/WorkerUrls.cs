namespace CycleQD.Runs.Distributed;

/// <summary>Checks a Redis URL as workers and coordinators take it.</summary>
public static class WorkerUrls
{
    /// <summary>Throws <see cref="Core.ConfigurationException"/> unless <paramref name="url"/> is redis://HOST:PORT[/DB] (or HOST:PORT).</summary>
    public static void Check(string url) => WorkQueue.ParseUrl(url);
}
