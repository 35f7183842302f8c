using System.Text.Json;
using System.Text.Json.Nodes;
using CycleQD.Core;

namespace CycleQD.Runs.Distributed;

/// <summary>
/// distributed.json in a run directory, written by a coordinator (<c>run/resume --workers</c>): the
/// run's key in Redis and the build and backend kind every worker must match. Workers find the
/// run's queues through it, so it is all a worker needs besides the Redis URL and the folder.
/// </summary>
/// <param name="RunKey">Names the run's Redis keys (cqd:KEY:…); kept across resumes so outstanding jobs and results are found again.</param>
/// <param name="Build">The coordinator's build (informational version).</param>
/// <param name="Backend">The coordinator's backend kind ("cpu", "cuda").</param>
internal sealed record DistributedRunFile(string RunKey, string Build, string Backend)
{
    public static string PathIn(string runDir) => Path.Combine(runDir, RunDirectory.DistributedFileName);

    public static DistributedRunFile? TryRead(string runDir)
    {
        string path = PathIn(runDir);
        if (!File.Exists(path)) return null;
        try
        {
            var o = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            return new DistributedRunFile(o["run_key"]!.GetValue<string>(), o["build"]!.GetValue<string>(), o["backend"]!.GetValue<string>());
        }
        catch (Exception e) when (e is JsonException or NullReferenceException or InvalidOperationException)
        {
            throw new ConfigurationException($"{path}: unreadable ({e.Message})");
        }
    }

    public void Write(string runDir) => RunDirectory.WriteAtomically(PathIn(runDir), System.Text.Encoding.UTF8.GetBytes(new JsonObject
    {
        ["run_key"] = RunKey,
        ["build"] = Build,
        ["backend"] = Backend,
    }.ToJsonString(Tensors.ReadableJson.Indented) + "\n"));

    /// <summary>A fresh key: 16 random hex digits.</summary>
    public static string NewKey() => Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));
}
