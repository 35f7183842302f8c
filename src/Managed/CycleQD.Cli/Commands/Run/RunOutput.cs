using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using CycleQD.Core.Engine;
using CycleQD.Runs;
using CycleQD.Runs.Families;
using CycleQD.Tensors;

namespace CycleQD.Cli.Commands.Run;

/// <summary>How run and resume report: every line (the default), <c>--quiet</c> (errors, warnings and one result line), or <c>--json</c> (one JSON object on stdout at the end).</summary>
internal enum RunOutputMode
{
    /// <summary>Progress lines and the summary.</summary>
    Normal,
    /// <summary>Only warnings and errors (stderr) and the final result line.</summary>
    Quiet,
    /// <summary>Only one JSON object on stdout, at the end; warnings and errors on stderr.</summary>
    Json,
}

/// <summary>--quiet and --json of run and resume, around <see cref="RunLoop"/>.</summary>
internal static class RunOutput
{
    /// <summary>--quiet.</summary>
    public static readonly Option<bool> Quiet = new("--quiet", "-q") { Description = "Print only warnings, errors and the final result line (for scripts)." };

    /// <summary>--json.</summary>
    public static readonly Option<bool> Json = new("--json")
    {
        Description = "Print one JSON object on stdout at the end (run dir, status, generations, per-archive summary, the test table when there is one); warnings and errors go to stderr.",
    };

    /// <summary>The mode the options ask for.</summary>
    /// <exception cref="CliUsageException">both --quiet and --json.</exception>
    public static RunOutputMode Mode(ParseResult parse) => (parse.GetValue(Quiet), parse.GetValue(Json)) switch
    {
        (true, true) => throw new CliUsageException("give --quiet or --json, not both"),
        (true, false) => RunOutputMode.Quiet,
        (false, true) => RunOutputMode.Json,
        _ => RunOutputMode.Normal,
    };

    /// <summary>Runs <paramref name="session"/> to its target, reporting in <paramref name="mode"/>.</summary>
    public static int Execute(RunSession session, RunOutputMode mode, TextWriter o, TextWriter err)
    {
        if (mode == RunOutputMode.Normal) return RunLoop.Execute(session, o);
        // The loop's lines are read here: warnings go on to stderr, the last line says how it ended.
        var lines = new LineSink(err);
        int code = RunLoop.Execute(session, lines);
        lines.Flush();
        if (mode == RunOutputMode.Quiet) o.WriteLine(code == 0 ? ResultLine(session) : lines.Last ?? $"stopped (exit {code})");
        else o.WriteLine(ToJson(session, code, lines.Last).ToJsonString(ReadableJson.Compact));
        return code;
    }

    /// <summary>"done: RUN_DIR: 150 generations; best code 0.845 db 1 os 0.96; final model test average 61.3 %".</summary>
    internal static string ResultLine(RunSession session)
    {
        var inv = CultureInfo.InvariantCulture;
        var labels = TaskLabels.ShortAll(session.Config.Options.Tasks);
        var sb = new StringBuilder($"done: {session.Directory.Path}: {session.Engine.NextGeneration} generations; best ");
        sb.Append(string.Join(" ", session.Engine.Archives.Select(a => $"{CycleQDOptions.QualityName(a.Task, labels)} {a.BestQuality.ToString("0.###", inv)}")));
        if (session.Report?.Find("final")?.Test is { } test)
            sb.Append($"; final model test average {(100 * test.Average()).ToString("F1", inv)} %");
        return sb.ToString();
    }

    /// <summary>The object --json prints.</summary>
    internal static JsonObject ToJson(RunSession session, int exitCode, string? lastLine)
    {
        var tasks = session.Config.Options.Tasks;
        var archives = new JsonArray(session.Engine.Archives.Select(a => (JsonNode)new JsonObject
        {
            ["task"] = CycleQDOptions.QualityName(a.Task, tasks),
            ["elites"] = a.Cells.Count,
            ["coverage"] = a.Coverage,
            ["qd_score"] = a.QdScore,
            ["best"] = a.Cells.Count == 0 ? null : a.BestQuality,
        }).ToArray());
        return new JsonObject
        {
            ["run_dir"] = session.Directory.Path,
            ["status"] = exitCode == 0 ? "done" : exitCode == CliApp.ExitInterrupted ? "stopped" : "failed",
            ["exit_code"] = exitCode,
            ["message"] = exitCode == 0 ? null : lastLine,
            ["generations"] = session.Engine.NextGeneration,
            ["target_generations"] = session.TargetGenerations,
            ["tasks"] = new JsonArray(tasks.Select(t => (JsonNode)t).ToArray()),
            ["archives"] = archives,
            ["summary"] = File.Exists(session.Directory.SummaryPath) ? session.Directory.SummaryPath : null,
            ["report"] = session.Report is { } r ? JsonNode.Parse(r.ToJson()) : null,
        };
    }

    /// <summary>Collects the loop's lines; passes "warning:" lines to stderr and keeps the last other one.</summary>
    private sealed class LineSink(TextWriter err) : TextWriter
    {
        private readonly StringBuilder _line = new();

        public string? Last { get; private set; }

        public override Encoding Encoding => Encoding.UTF8;

        public override void Write(char value)
        {
            if (value != '\n')
            {
                _line.Append(value);
                return;
            }
            string line = _line.ToString().TrimEnd('\r');
            _line.Clear();
            if (line.StartsWith("warning:", StringComparison.Ordinal)) err.WriteLine(line);
            else if (line.Length > 0) Last = line;
        }

        public override void Flush()
        {
            if (_line.Length > 0) Write('\n');
        }
    }
}
