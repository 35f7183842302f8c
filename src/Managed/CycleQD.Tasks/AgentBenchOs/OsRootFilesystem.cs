using System.Text.Json;
using CycleQD.Tasks.Sandbox;

namespace CycleQD.Tasks.AgentBenchOs;

/// <summary>
/// The pinned root file system every AgentBench OS sample runs on, as scripts/build-os-rootfs.sh
/// (run by <c>./build.sh setup</c>) leaves it: <c>CACHE/agentbench-os-rootfs/root</c> and its
/// <c>manifest.json</c> (content hash, id range, package versions).
/// </summary>
/// <param name="Root">The tree.</param>
/// <param name="ManifestPath">Its manifest.</param>
/// <param name="Hash">Content hash of the tree ("sha256:…").</param>
/// <param name="UidBase">Host id of uid 0 inside.</param>
/// <param name="UidCount">Ids mapped.</param>
/// <param name="Packages">Installed packages as "name version".</param>
public sealed record OsRootFilesystem(string Root, string ManifestPath, string Hash, long UidBase, long UidCount, IReadOnlyList<string> Packages)
{
    /// <summary>Folder name of the root file system under the cache folder.</summary>
    public const string FolderName = "agentbench-os-rootfs";

    /// <summary>The cache folder: <c>$CYCLEQD_CACHE</c>, else /var/cache/cycleqd (where build.sh setup builds it).</summary>
    public static string DefaultCacheDir =>
        Environment.GetEnvironmentVariable("CYCLEQD_CACHE") is { Length: > 0 } c ? c : "/var/cache/cycleqd";

    /// <summary>Reads the manifest under <paramref name="cacheDir"/> (default <see cref="DefaultCacheDir"/>).</summary>
    /// <exception cref="SandboxUnavailableException">The root file system is not built, or its manifest is unreadable; the message says how to build it.</exception>
    public static OsRootFilesystem Load(string? cacheDir = null)
    {
        string dir = Path.Combine(cacheDir ?? DefaultCacheDir, FolderName);
        string manifest = Path.Combine(dir, "manifest.json");
        string root = Path.Combine(dir, "root");
        const string how = "build it with `./build.sh setup` (or, as root, `scripts/build-os-rootfs.sh [CACHE_DIR]`; set CYCLEQD_CACHE to use another cache folder)";
        if (!File.Exists(manifest) || !Directory.Exists(root))
            throw new SandboxUnavailableException($"the AgentBench OS root file system is not built ({manifest} not found): {how}");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(manifest));
            var m = doc.RootElement;
            string hash = m.GetProperty("hash").GetString() ?? throw new InvalidDataException("\"hash\" is null");
            var packages = m.GetProperty("packages").EnumerateArray()
                .Select(p => p.GetProperty("name").GetString() + " " + p.GetProperty("version").GetString()).ToList();
            return new OsRootFilesystem(root, manifest, hash, m.GetProperty("uid_base").GetInt64(), m.GetProperty("uid_count").GetInt64(), packages);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or InvalidDataException)
        {
            throw new SandboxUnavailableException($"{manifest}: not a valid root file system manifest ({e.Message}): rebuild it: {how}");
        }
    }

    /// <summary>The sandbox's view of this tree, with <paramref name="writableBytes"/> for everything a sample writes.</summary>
    public SandboxRootFilesystem ForSandbox(long writableBytes) => new(Root, UidBase, UidCount) { WritableBytes = writableBytes };
}
