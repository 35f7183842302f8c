using System.Diagnostics;

namespace CycleQD.Cuda;

/// <summary>Finds the CUDA compiler the same way build.sh does (PATH, CUDA_HOME, /usr/local/cuda*).</summary>
internal static class NvccLocator
{
    /// <summary>Path of nvcc, or null.</summary>
    public static string? Find()
    {
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).ToList();
        foreach (var env in new[] { "CUDA_HOME", "CUDA_PATH" })
            if (Environment.GetEnvironmentVariable(env) is { Length: > 0 } home) dirs.Add(Path.Combine(home, "bin"));
        if (Directory.Exists("/usr/local"))
            dirs.AddRange(Directory.GetDirectories("/usr/local", "cuda*").Order(StringComparer.Ordinal).Select(d => Path.Combine(d, "bin")));
        return dirs.Select(d => Path.Combine(d, "nvcc")).FirstOrDefault(File.Exists);
    }

    /// <summary>The release line of `nvcc --version` (e.g. "Cuda compilation tools, release 11.8, V11.8.89"), or null.</summary>
    public static string? Version(string nvcc)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(nvcc, "--version") { RedirectStandardOutput = true, RedirectStandardError = true });
            if (p is null) return null;
            string output = p.StandardOutput.ReadToEnd();
            p.WaitForExit(10_000);
            return output.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.Contains("release", StringComparison.Ordinal));
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
