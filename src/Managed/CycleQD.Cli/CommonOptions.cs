using System.CommandLine;

namespace CycleQD.Cli;

/// <summary>Options shared by several verbs.</summary>
internal static class CommonOptions
{
    public static readonly Option<bool> Verbose = new("--verbose", "-v")
    {
        Description = "Show stack traces and extra detail on errors.",
        Recursive = true,
    };
}
