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

    [GeneratedRegex(@"^\s*\.target\s+(\w+)", RegexOptions.Multiline)]
    private static partial Regex TargetRegex();

    [GeneratedRegex(@"^\s*\.version\s+([\d.]+)", RegexOptions.Multiline)]
    private static partial Regex VersionRegex();
}
