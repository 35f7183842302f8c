using System.Text.RegularExpressions;
using CycleQD.Core.Compute;
using CycleQD.Testing;

namespace CycleQD.Core.Tests;

/// <summary>
/// The randomized-SVD defaults have one source, <see cref="MutationOptions"/>'s record defaults;
/// the docs restate them and must not drift. The recognisable forms read from the docs:
/// YAML lines or code spans <c>power_iterations: N</c> / <c>oversampling: N</c> (with an optional
/// <c>(default N)</c> note), the formula <c>max(A, k/B)</c> for oversampling −1, and on any line
/// that speaks of a default, <c>q = N</c> and <c>p = N</c>.
/// </summary>
public partial class DocumentedDefaultsTests
{
    private static readonly MutationOptions Defaults = new();

    [GeneratedRegex(@"(?:^\s*|`)(power_iterations|oversampling):\s*(-?\d+)([^`\r\n]*)", RegexOptions.Multiline)]
    private static partial Regex YamlKey();

    [GeneratedRegex(@"\(default:? (-?\d+)")]
    private static partial Regex DefaultNote();

    [GeneratedRegex(@"max\((\d+), k\s*/\s*(\d+)\)")]
    private static partial Regex OversamplingFormula();

    [GeneratedRegex(@"\bq = (\d+)")]
    private static partial Regex PowerIterationsProse();

    [GeneratedRegex(@"\bp = (\d+)\b")]
    private static partial Regex OversamplingProse();

    private static string Doc(string name) => Path.Combine(TestPaths.RepoRoot, "docs", name);

    public static TheoryData<string> DocFiles()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "docs"), "*.md").Order(StringComparer.Ordinal))
            data.Add(Path.GetFileName(f));
        return data;
    }

    [Theory]
    [InlineData("guide.md")]
    [InlineData("running.md")]
    [InlineData("cuda.md")]
    public void Doc_StatesBothRandomizedSvdDefaults_InTheRecognisableForm(string name)
    {
        var keys = YamlKey().Matches(File.ReadAllText(Doc(name))).Select(m => m.Groups[1].Value).ToHashSet();
        Assert.Contains("power_iterations", keys);
        Assert.Contains("oversampling", keys);
    }

    [Theory]
    [MemberData(nameof(DocFiles))]
    public void Doc_RandomizedSvdDefaults_AgreeWithMutationOptions(string name)
    {
        string text = File.ReadAllText(Doc(name));
        var wrong = new List<string>();
        foreach (Match m in YamlKey().Matches(text))
        {
            int expected = m.Groups[1].Value == "power_iterations" ? Defaults.PowerIterations : Defaults.Oversampling;
            if (int.Parse(m.Groups[2].Value) != expected) wrong.Add($"'{m.Value.Trim()}': the default is {expected}");
            foreach (Match note in DefaultNote().Matches(m.Groups[3].Value))
                if (int.Parse(note.Groups[1].Value) != expected) wrong.Add($"'{m.Value.Trim()}': the note says 'default {note.Groups[1].Value}', the default is {expected}");
        }

        foreach (Match m in OversamplingFormula().Matches(text))
        {
            int floor = int.Parse(m.Groups[1].Value), divisor = int.Parse(m.Groups[2].Value);
            foreach (int k in new[] { 1, 8, 19, 20, 21, 22, 64, 256, 4096 })
                if (Defaults.OversamplingFor(k) != Math.Max(floor, k / divisor))
                {
                    wrong.Add($"'{m.Value}' gives {Math.Max(floor, k / divisor)} at k = {k}, the code {Defaults.OversamplingFor(k)}");
                    break;
                }
        }

        // perf.md is a log of measurements and names the settings each one ran with, past defaults included.
        if (name != "perf.md")
            foreach (var line in text.Split('\n').Where(l => l.Contains("default", StringComparison.OrdinalIgnoreCase)))
            {
                foreach (Match q in PowerIterationsProse().Matches(line))
                    if (int.Parse(q.Groups[1].Value) != Defaults.PowerIterations)
                        wrong.Add($"'{q.Value}' on a line about defaults (the default q is {Defaults.PowerIterations}): {line.Trim()}");
                foreach (Match p in OversamplingProse().Matches(line))
                    if (int.Parse(p.Groups[1].Value) != Defaults.Oversampling)
                        wrong.Add($"'{p.Value}' on a line about defaults (the default p is {(Defaults.Oversampling >= 0 ? Defaults.Oversampling.ToString() : "max(10, k/2), not a fixed number")}): {line.Trim()}");
            }

        Assert.True(wrong.Count == 0, $"docs/{name} disagrees with MutationOptions:\n" + string.Join("\n", wrong));
    }
}
