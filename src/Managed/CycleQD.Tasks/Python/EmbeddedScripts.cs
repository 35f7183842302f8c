namespace CycleQD.Tasks.Python;

/// <summary>The Python programs embedded in this assembly (Resources/*.py), by file name.</summary>
internal static class EmbeddedScripts
{
    public static string Read(string fileName)
    {
        using var s = typeof(EmbeddedScripts).Assembly.GetManifestResourceStream("CycleQD.Tasks." + fileName)
            ?? throw new InvalidOperationException($"embedded script {fileName} is missing from the assembly");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }
}
