using System.CommandLine;
using System.Text;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

/// <summary>The user's situations (a full disk, an interrupt, settings too large) get their exit code and one line, not "internal error".</summary>
public class ExitCodeTests
{
    private static Command Verb(string name) => CliApp.BuildRoot().Subcommands.Single(c => c.Name == name);

    private const string Synthetic = """
        name: sizes
        seed: 1
        generations: 2
        tasks: [a, b, c]
        model:
          synthetic: { layers: 2, rows: 24, cols: 16, dtype: bf16, seed: 5 }
        archive: { bins: 6 }
        """;

    [Fact]
    public void DiskFull_RealEnospcFromDevFull_ExitOneAndOneLineNamingThePath()
    {
        MachineRequirement.Require(File.Exists("/dev/full"), "no /dev/full on this machine");
        IOException? real = null;
        try
        {
            using var fs = new FileStream("/dev/full", FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1);
            fs.Write(new byte[4096]);
        }
        catch (IOException e)
        {
            real = e;
        }
        Assert.NotNull(real);
        // As it reaches the CLI from a parallel writer: wrapped.
        var err = new StringWriter();
        int rc = CliApp.Report(new AggregateException(new InvalidOperationException("commit failed", real)), Verb("run"), err, verbose: false);
        Assert.Equal(CliApp.ExitBadInput, rc);
        Assert.Equal(["error: no space left on device: /dev/full"], err.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void OtherIoErrorAndBugs_StayInternalErrors()
    {
        var err = new StringWriter();
        Assert.Equal(CliApp.ExitInternalError, CliApp.Report(new IOException("Input/output error : '/x'", 5), Verb("run"), err, verbose: false));
        Assert.StartsWith("error: IOException: Input/output error", err.ToString());
        Assert.Equal(CliApp.ExitInternalError, CliApp.Report(new InvalidOperationException("bug"), Verb("run"), new StringWriter(), verbose: false));
    }

    [Fact]
    public void Cancelled_Exit130_OneLineNamingTheVerb()
    {
        var err = new StringWriter();
        var bench = CliApp.BuildRoot().Subcommands.Single(c => c.Name == "generate").Subcommands.Single(c => c.Name == "bench");
        Assert.Equal(CliApp.ExitInterrupted, CliApp.Report(new TaskCanceledException(), bench, err, verbose: false));
        Assert.Equal("interrupted: cycleqd generate bench stopped before it finished", err.ToString().Trim());
    }

    /// <summary>
    /// SIGTERM rather than SIGINT: a shell starts background jobs with SIGINT ignored, so a SIGINT
    /// test would depend on how the tests were launched; both signals cancel the same token.
    /// </summary>
    [Fact]
    public void Eval_TerminatedWhileScoring_Exit130WithOneLine()
    {
        string data = TestPaths.RequireSharedData();
        using var dir = new TempDir();
        var psi = RunResumeCommandTests.CycleqdProcess("eval", "--task", "tinyskills/code", "--split", "test", "--data", data,
            "--model", Path.Combine(TestPaths.RepoRoot, "models", "tinyskills", "expert-code"), "--output", dir.File("out.jsonl"));
        using var p = System.Diagnostics.Process.Start(psi)!;
        string? first = p.StandardOutput.ReadLine(); // "task: ..." comes just before the scoring starts
        Assert.StartsWith("task: tinyskills/code", first);
        using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) kill.WaitForExit();
        Assert.True(p.WaitForExit(60_000), "no exit after the signal");
        string rest = p.StandardOutput.ReadToEnd();
        var errLines = p.StandardError.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Where(l => !l.StartsWith("  ", StringComparison.Ordinal) && !l.Contains('\r')).ToList(); // progress lines redraw with \r
        Assert.True(p.ExitCode == 130, $"exit {p.ExitCode}; stdout: {rest}; stderr: {string.Join(" | ", errLines)}");
        Assert.Contains("interrupted: cycleqd eval stopped before it finished", errLines);
        Assert.DoesNotContain("score:", rest);
        Assert.False(File.Exists(dir.File("out.jsonl")));
    }

    /// <summary>
    /// The reason the test above is reliable: eval prints nothing (so no caller can signal it) before
    /// System.CommandLine's signal handler holds the running task. Without the first yield, a SIGTERM
    /// right after the "task:" line exited 143 with no "interrupted" line on a loaded machine.
    /// </summary>
    [Fact]
    public async Task Eval_YieldsBeforeAnyOutput_SoTheSignalHandlerAlreadyHoldsItsTask()
    {
        string data = TestPaths.RequireSharedData();
        using var dir = new TempDir();
        // What the action writes on this thread while InvokeAsync has not returned yet, i.e. before its
        // first yield. After the yield it continues on another thread, which may write at any moment
        // (even before InvokeAsync's return is seen here), so those writes do not count.
        var output = new SynchronousWriteRecorder(Environment.CurrentManagedThreadId);
        var parse = CliApp.BuildRoot().Parse(["eval", "--task", "tinyskills/code", "--split", "test", "--data", data,
            "--responder", "scripted:gold", "--output", dir.File("out.jsonl")]);
        // No termination timeout: this test host's own signal handling stays as it is.
        var config = new System.CommandLine.InvocationConfiguration { Output = output, Error = new StringWriter(), ProcessTerminationTimeout = null };
        using var cts = new CancellationTokenSource();
        cts.Cancel(); // only what runs before the first yield matters here, so the evaluation may stop early
        output.Invoking = true;
        Task<int> running = parse.InvokeAsync(config, cts.Token);
        output.Invoking = false;
        Assert.Equal("", output.BeforeReturn.ToString());
        try
        {
            await running;
        }
        catch (OperationCanceledException)
        {
            // Where a cancelled evaluation stops is not what this test checks.
        }
        Assert.StartsWith("task: tinyskills/code", output.ToString()); // the action did run, after its yield
    }

    /// <summary>A writer that also keeps, apart, what its owner thread wrote while <see cref="Invoking"/> was set.</summary>
    private sealed class SynchronousWriteRecorder(int ownerThread) : StringWriter
    {
        public volatile bool Invoking;

        public StringBuilder BeforeReturn { get; } = new();

        private void Note(ReadOnlySpan<char> text)
        {
            if (Invoking && Environment.CurrentManagedThreadId == ownerThread)
                lock (BeforeReturn) BeforeReturn.Append(text);
        }

        public override void Write(char value) { Note([value]); base.Write(value); }

        public override void Write(char[] buffer, int index, int count) { Note(buffer.AsSpan(index, count)); base.Write(buffer, index, count); }

        public override void Write(ReadOnlySpan<char> buffer) { Note(buffer); base.Write(buffer); }

        public override void Write(string? value) { Note(value); base.Write(value); }

        public override void WriteLine(ReadOnlySpan<char> buffer) { Note(buffer); base.WriteLine(buffer); }

        public override void WriteLine(string? value) { Note(value); base.WriteLine(value); }
    }

    [Theory]
    [InlineData("archive: { bins: 6 }", "archive: { bins: 100000 }", "archive.bins: 100000 bins on each of 2 behaviour axes (3 tasks) make 1E+10 cells per archive, too many: at most 1,000,000 are supported")]
    [InlineData("rows: 24, cols: 16", "rows: 100000, cols: 100000", "model.synthetic: layers 2 × (rows 100000 × cols 100000 + 100000) = 2E+10 parameters, too many: at most 134,217,728")]
    [InlineData("archive: { bins: 6 }", "archive: { bins: 6 }\ncrossover: { std: 1.0e38 }", "crossover: mean 1 and std 1E+38 are too large: the weights would overflow float32")]
    public void Run_SizesThatWouldOverflow_NameTheSetting_Exit1(string from, string to, string expected)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Synthetic.Replace(from, to));
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"));
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        var line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"error: {dir.File("exp.yaml")}: ", line);
        Assert.Contains(expected, line);
        Assert.False(Directory.Exists(dir.File("run")));
    }
}
