namespace CycleQD.Testing;

/// <summary>Locations the tests read from: the repository and the shared data folder beside it.</summary>
internal static class TestPaths
{
    /// <summary>The repository root (the folder holding CycleQD.Native.sln).</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>The engine's shipped test model (a Hugging Face folder).</summary>
    public static string Stories260K => Path.Combine(RepoRoot, "models", "stories260K");

    /// <summary>shared/data: $CYCLEQD_SHARED_DATA, else ../shared/data beside the repository; null when absent.</summary>
    public static string? SharedData
    {
        get
        {
            string? env = Environment.GetEnvironmentVariable("CYCLEQD_SHARED_DATA");
            if (!string.IsNullOrEmpty(env) && Directory.Exists(env)) return env;
            string beside = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "data"));
            return Directory.Exists(beside) ? beside : null;
        }
    }

    /// <summary>A path under shared/data, or skips the test (with the reason) when the folder is not there.</summary>
    public static string RequireSharedData(params string[] parts)
    {
        string? root = SharedData;
        if (root is null) Assert.Skip("shared/data is not beside the repository and CYCLEQD_SHARED_DATA is unset");
        string p = Path.Combine([root, .. parts]);
        if (!File.Exists(p) && !Directory.Exists(p)) Assert.Skip($"{p} is not present");
        return p;
    }

    private static string FindRepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "CycleQD.Native.sln"))) return d.FullName;
        throw new InvalidOperationException("CycleQD.Native.sln not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>A scratch folder deleted at dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("cycleqd-test-").FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
