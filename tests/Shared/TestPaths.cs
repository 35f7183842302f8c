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

    /// <summary>
    /// A path under shared/data. When the folder or the path is not there the test skips with the
    /// reason, or fails under CI (<see cref="MachineRequirement"/>): CI must run the data tests.
    /// </summary>
    public static string RequireSharedData(params string[] parts) => RequireSharedData(SharedData, MachineRequirement.IsCi, parts);

    /// <summary>As <see cref="RequireSharedData(string[])"/> with the data root and CI given (null root: absent).</summary>
    public static string RequireSharedData(string? root, bool ci, params string[] parts)
    {
        string? missing = SharedDataProblem(root, parts);
        MachineRequirement.Require(missing is null, missing!, ci);
        return Path.Combine([root!, .. parts]);
    }

    /// <summary>Why <paramref name="parts"/> under the data root <paramref name="root"/> (null: absent) cannot be used, or null.</summary>
    public static string? SharedDataProblem(string? root, params string[] parts)
    {
        if (root is null)
            return "the shared test data folder is missing: neither $CYCLEQD_SHARED_DATA nor "
                   + Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "data")) + " exists";
        string p = Path.Combine([root, .. parts]);
        return File.Exists(p) || Directory.Exists(p) ? null : $"{p} is not present in the shared test data folder";
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
