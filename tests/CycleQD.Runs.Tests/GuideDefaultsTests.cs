using System.Globalization;
using System.Text.RegularExpressions;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

/// <summary>
/// docs/guide.md's annotated experiment file states the default of most keys in its comments. Every
/// such default is compared with what the parser actually gives a file that leaves the key out, so a
/// changed default (or a doc edit) that makes them disagree fails here. A documented default the
/// test does not know how to read from the code fails too, so new keys get covered.
/// </summary>
public partial class GuideDefaultsTests
{
    // "(default 15)", "(default: 0.2", "(default \"experiment\")", or a comment that starts "default 1.0".
    [GeneratedRegex(@"\(default:? (-?[0-9][0-9.]*|""[^""]*""|true|false|none)|^\s*default (-?[0-9][0-9.]*)")]
    private static partial Regex ExplicitDefault();

    // "elite (default: …)", "paper (default)", "svd (the paper's, default)": the word before the note.
    [GeneratedRegex(@"(\S+) \((?:default\b|the paper's, default\))")]
    private static partial Regex WordDefault();

    // A key, its value (empty for a section) and its comment.
    [GeneratedRegex(@"^(\s*)([a-z_]+):([^#]*)(?:#(.*))?$")]
    private static partial Regex KeyLine();

    /// <summary>(dotted key, documented default) for every key line of the experiment-file section's YAML blocks that states one.</summary>
    private static List<(string Key, string Default)> DocumentedDefaults()
    {
        string text = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "docs", "guide.md"));
        int start = text.IndexOf("## The experiment file", StringComparison.Ordinal);
        int end = text.IndexOf("\n## ", start + 5, StringComparison.Ordinal);
        var section = text[start..end];
        var found = new List<(string, string)>();
        foreach (Match block in YamlBlock().Matches(section))
        {
            var stack = new List<(int Indent, string Key)>();
            foreach (string line in block.Groups[1].Value.Split('\n'))
            {
                var m = KeyLine().Match(line);
                if (!m.Success) continue;
                int indent = m.Groups[1].Value.Length;
                stack.RemoveAll(s => s.Indent >= indent);
                stack.Add((indent, m.Groups[2].Value));
                string key = string.Join('.', stack.Select(s => s.Key));
                // A section's comment (final_merge's "default: on for real models") describes the section.
                if (m.Groups[3].Value.Trim().Length == 0 || !m.Groups[4].Success) continue;
                string comment = m.Groups[4].Value;
                var e = ExplicitDefault().Match(comment);
                if (e.Success) { found.Add((key, (e.Groups[1].Success ? e.Groups[1].Value : e.Groups[2].Value).Trim('"'))); continue; }
                var w = WordDefault().Match(comment);
                if (w.Success) found.Add((key, w.Groups[1].Value));
            }
        }
        return found;
    }

    [GeneratedRegex(@"```yaml\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex YamlBlock();

    /// <summary>What the parser gives each key when a file leaves it out.</summary>
    private static Dictionary<string, string> CodeDefaults()
    {
        var c = ExperimentConfig.Parse("tasks: [a, b]\nmodel: { synthetic: {} }\n", "exp.yaml", Path.GetTempPath());
        var f = FinalMergeSettings.Default(true);
        var o = c.Options;
        var m = o.Mutation;
        var e = c.Evaluation;
        string Num(double x) => x.ToString("R", CultureInfo.InvariantCulture);
        string Word(object x) => x.ToString()!.ToLowerInvariant();
        return new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["name"] = c.Name,
            ["seed"] = Num(o.Seed),
            ["generations"] = Num(c.Generations),
            ["evaluation.split_seed"] = Num(e.SplitSeed),
            ["evaluation.agentbench_db"] = Word(e.DbLayout),
            ["evaluation.agentbench_os"] = Num(e.OsRepeats),
            ["evaluation.mbpp"] = Word(e.MbppSanitize),
            ["archive.bins"] = Num(o.Bins),
            ["archive.cycle"] = Word(o.Cycle),
            ["quality_task_interval"] = Num(o.QualityTaskInterval),
            ["sampling.kind"] = Word(o.Sampling.Kind),
            ["sampling.alpha_low"] = Num(o.Sampling.AlphaLow),
            ["sampling.alpha_high"] = Num(o.Sampling.AlphaHigh),
            ["sampling.normaliser"] = Word(o.Sampling.Normaliser),
            ["crossover.mean"] = Num(o.Crossover.Mean),
            ["crossover.std"] = Num(o.Crossover.Std),
            ["mutation.kind"] = Word(m.Kind),
            ["mutation.basis"] = Word(m.Basis),
            ["mutation.svd_scale_max"] = Num(m.SvdScaleMax),
            ["mutation.svd_rank"] = Num(m.SvdRank),
            ["mutation.power_iterations"] = Num(m.PowerIterations),
            ["mutation.oversampling"] = Num(m.Oversampling),
            ["mutation.sigma"] = Num(m.GaussianStd),
            ["mutation.include_embeddings"] = Word(m.IncludeEmbeddings),
            ["in_flight"] = Num(o.InFlight),
            ["final_merge.method"] = f.Method,
            ["final_merge.top"] = Num(f.Top),
            ["final_merge.candidates"] = f.Candidates,
            ["final_merge.generalists"] = Num(f.Generalists),
            ["final_merge.grid"] = Num(f.Grid[0]),
            ["final_merge.rounds"] = Num(f.Rounds),
            ["report.ties_density"] = Num(c.Report.TiesDensity),
            ["report.ties_lambda"] = Num(c.Report.TiesLambda),
            ["report.baselines"] = c.Report.Baselines is { Count: > 0 } ? "some" : "none",
        };
    }

    private static bool Same(string documented, string code) =>
        double.TryParse(documented, NumberStyles.Float, CultureInfo.InvariantCulture, out double a)
        && double.TryParse(code, NumberStyles.Float, CultureInfo.InvariantCulture, out double b)
            ? a == b
            : string.Equals(documented, code, StringComparison.OrdinalIgnoreCase);

    [Fact]
    public void Guide_EveryDocumentedDefault_IsTheParsersDefault()
    {
        var documented = DocumentedDefaults();
        var code = CodeDefaults();
        // The reading must reach the whole file, or the comparison below would pass on too little.
        Assert.True(documented.Count >= 20, $"only {documented.Count} documented defaults were read: {string.Join(", ", documented.Select(d => d.Key))}");
        var wrong = new List<string>();
        foreach (var (key, value) in documented)
        {
            if (!code.TryGetValue(key, out string? actual)) wrong.Add($"{key}: documented default '{value}', but this test has no code value for it (add one)");
            else if (!Same(value, actual)) wrong.Add($"{key}: guide.md says the default is '{value}', the parser gives '{actual}'");
        }
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
    }

    [Fact]
    public void Reader_FindsAWrongDefault()
    {
        // The reader on a line that states a default the parser does not have.
        var m = ExplicitDefault().Match(" G: bins per axis (default 14); cells");
        Assert.True(m.Success);
        Assert.False(Same(m.Groups[1].Value, CodeDefaults()["archive.bins"]));
        Assert.Equal("elite", WordDefault().Match(" elite (default: probability ∝ …) | random").Groups[1].Value);
    }
}
