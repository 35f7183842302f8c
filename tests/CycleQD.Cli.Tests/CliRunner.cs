namespace CycleQD.Cli.Tests;

internal sealed record CliResult(int ExitCode, string Out, string Err);

internal static class CliRunner
{
    public static CliResult Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int rc = CliApp.Run(args, o, e);
        return new CliResult(rc, o.ToString(), e.ToString());
    }
}
