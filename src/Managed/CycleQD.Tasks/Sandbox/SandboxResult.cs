namespace CycleQD.Tasks.Sandbox;

/// <summary>How a sandboxed run ended.</summary>
/// <param name="ExitCode">Exit status of the command; 128 + n when a signal n ended it (as the shell reports it).</param>
/// <param name="Stdout">Captured stdout (UTF-8): at most <see cref="SandboxLimits.OutputBytes"/> bytes, and when the
/// stream was longer a "[… N bytes dropped …]" line and its last <see cref="SandboxLimits.OutputTailBytes"/> bytes;
/// empty when stdout went to a sink.</param>
/// <param name="Stderr">Captured stderr (same bounds).</param>
/// <param name="TimedOut">The wall-clock limit was reached and the tree was killed.</param>
/// <param name="OutputLimitExceeded">A stream exceeded its bound and the tree was killed.</param>
/// <param name="Elapsed">Wall-clock time of the run.</param>
public sealed record SandboxResult(int ExitCode, string Stdout, string Stderr, bool TimedOut, bool OutputLimitExceeded, TimeSpan Elapsed)
{
    /// <summary>The command exited with status 0 within every limit.</summary>
    public bool Succeeded => ExitCode == 0 && !TimedOut && !OutputLimitExceeded;
}
