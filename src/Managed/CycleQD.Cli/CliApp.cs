using System.CommandLine;
using System.CommandLine.Invocation;
using CycleQD.Cli.Commands.Bench;
using CycleQD.Cli.Commands.Doctor;
using CycleQD.Cli.Commands.Eval;
using CycleQD.Cli.Commands.Export;
using CycleQD.Cli.Commands.Generate;
using CycleQD.Cli.Commands.Inspect;
using CycleQD.Cli.Commands.Merge;
using CycleQD.Cli.Commands.Resume;
using CycleQD.Cli.Commands.Run;
using CycleQD.Cli.Commands.Show;
using CycleQD.Core;
using CycleQD.Cuda;
using CycleQD.Onnx.Runtime;
using CycleQD.Runs;
using CycleQD.Tensors;

namespace CycleQD.Cli;

/// <summary>Builds the command tree and runs it, turning failures into one readable line.</summary>
internal static class CliApp
{
    /// <summary>Exit code for bad input (a bad file, folder or option value) and for the user's situation (a full disk).</summary>
    public const int ExitBadInput = 1;

    /// <summary>Exit code for an unexpected internal failure.</summary>
    public const int ExitInternalError = 70;

    /// <summary>Exit code after Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).</summary>
    public const int ExitInterrupted = 130;

    // ENOSPC on Linux (IOException.HResult is the raw errno there), ERROR_DISK_FULL and ERROR_HANDLE_DISK_FULL on Windows.
    private const int Enospc = 28;
    private const int WindowsDiskFull = unchecked((int)0x80070070);
    private const int WindowsHandleDiskFull = unchecked((int)0x80070027);

    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("CycleQD.Native: CycleQD model merging with CUDA kernels and ONNX Runtime evaluation.");
        root.Options.Add(CommonOptions.Verbose);
        root.Subcommands.Add(InspectCommand.Create());
        root.Subcommands.Add(DoctorCommand.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(RunCommand.Create());
        root.Subcommands.Add(ResumeCommand.Create());
        root.Subcommands.Add(Commands.Worker.WorkerCommand.Create());
        root.Subcommands.Add(Commands.Worker.WorkersCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(MergeCommand.Create());
        root.Subcommands.Add(ExportCommand.Create());
        root.Subcommands.Add(ShowCommand.Create());
        root.Subcommands.Add(Commands.Synthesize.SynthesizeCommand.Create());
        return root;
    }

    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        var root = BuildRoot();
        var parse = root.Parse(args);
        bool verbose = parse.GetValue(CommonOptions.Verbose);
        if (parse.Action is ParseErrorAction && parse.Errors.Count > 0)
        {
            // The errors name the option and the value; the whole help text would bury them.
            foreach (var e in parse.Errors) error.WriteLine("error: " + e.Message);
            return ExitBadInput;
        }
        // Async verbs (eval) get a token that Ctrl-C cancels; the verb then ends with an OperationCanceledException.
        var config = new InvocationConfiguration
        {
            Output = output, Error = error, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = TimeSpan.FromSeconds(30),
        };
        try
        {
            return parse.Invoke(config);
        }
        catch (Exception e)
        {
            return Report(e, parse.CommandResult.Command, error, verbose);
        }
    }

    /// <summary>Writes the one line that <paramref name="e"/> deserves and returns the exit code.</summary>
    internal static int Report(Exception e, Command command, TextWriter error, bool verbose)
    {
        if (Find<OperationCanceledException>(e) is not null)
        {
            error.WriteLine($"interrupted: cycleqd {CommandPath(command)} stopped before it finished");
            return ExitInterrupted;
        }
        if (NoSpaceLeft(e) is { } full)
        {
            error.WriteLine($"error: no space left on device: {full}");
            if (verbose) error.WriteLine(e);
            return ExitBadInput;
        }
        if (IsUserError(e))
        {
            error.WriteLine("error: " + e.Message);
            if (verbose) error.WriteLine(e);
            return ExitBadInput;
        }
        error.WriteLine($"error: {e.GetType().Name}: {e.Message}");
        error.WriteLine(verbose ? e.ToString() : "(run again with --verbose for the stack trace)");
        return ExitInternalError;
    }

    /// <summary>The path of a disk-full failure in <paramref name="e"/> or its inner exceptions ("?" when the message names none); null when it is not one.</summary>
    internal static string? NoSpaceLeft(Exception e)
    {
        if (Find<IOException>(e, io => io.HResult is Enospc or WindowsDiskFull or WindowsHandleDiskFull) is not { } full) return null;
        // .NET writes "No space left on device : '/path/file'".
        int q = full.Message.IndexOf(" : '", StringComparison.Ordinal);
        return q >= 0 && full.Message.EndsWith('\'') ? full.Message[(q + 4)..^1] : "?";
    }

    private static T? Find<T>(Exception e, Func<T, bool>? match = null) where T : Exception
    {
        if (e is T t && (match is null || match(t))) return t;
        if (e is AggregateException ag)
        {
            foreach (var inner in ag.InnerExceptions)
                if (Find(inner, match) is { } found) return found;
            return null;
        }
        return e.InnerException is { } next ? Find(next, match) : null;
    }

    private static string CommandPath(Command command)
    {
        var names = new List<string>();
        for (Symbol? s = command; s is Command c && s is not RootCommand; s = c.Parents.FirstOrDefault())
            names.Insert(0, c.Name);
        return string.Join(' ', names);
    }

    private static bool IsUserError(Exception e) =>
        e is TensorFormatException or CliUsageException or FileNotFoundException or DirectoryNotFoundException
            or ExecutionProviderUnavailableException or CudaUnavailableException or DeviceMemoryException
            or ConfigurationException or RunDirectoryException or Runs.Families.Llama.TaskEnvironmentException
            or InvalidDataException or Onnx.Synthesis.SynthesisTargetException or Tasks.Sandbox.SandboxUnavailableException or Tasks.Database.DatabaseUnavailableException;
}

/// <summary>A command-line value that cannot be used; its message is shown as is.</summary>
internal sealed class CliUsageException(string message) : Exception(message);
