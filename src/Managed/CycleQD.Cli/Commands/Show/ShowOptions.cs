using System.CommandLine;

namespace CycleQD.Cli.Commands.Show;

/// <summary>The argument and options of `cycleqd show`.</summary>
internal static class ShowOptions
{
    public static readonly Argument<string> RunDir = new("RUN") { Description = "Run directory made by cycleqd run (finished or still running; it is only read)." };

    public static readonly Option<string?> Task = new("--task") { Description = "Show only this task's archive (default: every archive; a run without the cycle has one, mean)." };

    public static readonly Option<string> Sort = new("--sort")
    {
        Description = "Row order: quality (highest first, the default), generation (newest first), or a task name (that task's score, highest first).",
        DefaultValueFactory = _ => "quality",
    };

    public static readonly Option<bool> Csv = new("--csv") { Description = "Write CSV (one header line, one line per elite) instead of a table." };

    public static readonly Option<bool> Json = new("--json") { Description = "Write a JSON array (one object per elite) instead of a table." };

    public static IEnumerable<Symbol> All => [RunDir, Task, Sort, Csv, Json];
}
