using System.Text.RegularExpressions;

namespace CycleQD.Cuda;

/// <summary>One PTX module embedded in this assembly.</summary>
/// <param name="Name">Resource name, e.g. "merge.compute_90.ptx".</param>
/// <param name="Target">The PTX ".target" (e.g. "sm_90"), or "?" when absent.</param>
/// <param name="IsaVersion">The PTX ".version" (ISA), or "?".</param>
/// <param name="Bytes">Size of the module text.</param>
public sealed record PtxModuleInfo(string Name, string Target, string IsaVersion, int Bytes);

/// <summary>The PTX modules built by native/CMakeLists.txt and embedded at build time.</summary>
public static partial class PtxCatalog
{
    private const string Prefix = "ptx/";

    /// <summary>Every embedded module with its target and ISA version.</summary>
    public static IReadOnlyList<PtxModuleInfo> List()
    {
        var asm = typeof(PtxCatalog).Assembly;
        var result = new List<PtxModuleInfo>();
        foreach (var res in asm.GetManifestResourceNames().Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            string text = Read(res[Prefix.Length..]);
            result.Add(new PtxModuleInfo(res[Prefix.Length..],
                TargetRegex().Match(text) is { Success: true } t ? t.Groups[1].Value : "?",
                VersionRegex().Match(text) is { Success: true } v ? v.Groups[1].Value : "?",
                text.Length));
        }
        return result;
    }

    /// <summary>The text of an embedded module.</summary>
    /// <exception cref="FileNotFoundException">no such module (the kernels were not built: nvcc missing at build time).</exception>
    public static string Read(string name)
    {
        using var s = typeof(PtxCatalog).Assembly.GetManifestResourceStream(Prefix + name)
            ?? throw new FileNotFoundException($"PTX module '{name}' is not embedded in this build (was nvcc available when it was built?)");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    /// <summary>
    /// The embedded file of module <paramref name="module"/> to load on a GPU of compute capability
    /// <paramref name="computeCapability"/> (e.g. 90): the highest compute_XX not above it.
    /// </summary>
    /// <exception cref="CudaUnavailableException">no build of that module runs on this GPU, or none is embedded.</exception>
    public static string ModuleFor(string module, int computeCapability)
    {
        var builds = List().Select(p => p.Name)
            .Select(n => ModuleNameRegex().Match(n))
            .Where(m => m.Success && m.Groups[1].Value == module)
            .Select(m => (Name: m.Value, Arch: int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)))
            .ToList();
        if (builds.Count == 0)
            throw new CudaUnavailableException($"PTX module '{module}' is not embedded in this build (was nvcc available when it was built?)");
        var fit = builds.Where(b => b.Arch <= computeCapability).OrderByDescending(b => b.Arch).FirstOrDefault();
        if (fit.Name is null)
            throw new CudaUnavailableException($"PTX module '{module}' is built for compute_{string.Join("/compute_", builds.Select(b => b.Arch).Order())}; this GPU is compute {computeCapability / 10}.{computeCapability % 10}");
        return fit.Name;
    }

    [GeneratedRegex(@"^(\w+)\.compute_(\d+)\.ptx$")]
    private static partial Regex ModuleNameRegex();

    [GeneratedRegex(@"^\s*\.target\s+(\w+)", RegexOptions.Multiline)]
    private static partial Regex TargetRegex();

    [GeneratedRegex(@"^\s*\.version\s+([\d.]+)", RegexOptions.Multiline)]
    private static partial Regex VersionRegex();
}
