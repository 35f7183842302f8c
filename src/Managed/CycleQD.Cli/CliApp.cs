using System.CommandLine;
using CycleQD.Cli.Commands.Bench;
using CycleQD.Cli.Commands.Doctor;
using CycleQD.Cli.Commands.Eval;
using CycleQD.Cli.Commands.Export;
using CycleQD.Cli.Commands.Generate;
using CycleQD.Cli.Commands.Inspect;
using CycleQD.Cli.Commands.Merge;
using CycleQD.Cli.Commands.Resume;
using CycleQD.Cli.Commands.Run;
using CycleQD.Core;
using CycleQD.Cuda;
using CycleQD.Onnx.Runtime;
using CycleQD.Runs;
using CycleQD.Tensors;

namespace CycleQD.Cli;

/// <summary>Builds the command tree and runs it, turning failures into one readable line.</summary>
internal static class CliApp
{
    /// <summary>Exit code for bad input (a bad file, folder or option value).</summary>
    public const int ExitBadInput = 1;

    /// <summary>Exit code for an unexpected internal failure.</summary>
    public const int ExitInternalError = 70;

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
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(MergeCommand.Create());
        root.Subcommands.Add(ExportCommand.Create());
        return root;
    }

    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        var root = BuildRoot();
        var parse = root.Parse(args);
        bool verbose = parse.GetValue(CommonOptions.Verbose);
        var config = new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false };
        try
        {
            return parse.Invoke(config);
        }
        catch (Exception e) when (IsUserError(e))
        {
            error.WriteLine("error: " + e.Message);
            if (verbose) error.WriteLine(e);
            return ExitBadInput;
        }
        catch (Exception e)
        {
            error.WriteLine($"error: {e.GetType().Name}: {e.Message}");
            error.WriteLine(verbose ? e.ToString() : "(run again with --verbose for the stack trace)");
            return ExitInternalError;
        }
    }

    private static bool IsUserError(Exception e) =>
        e is TensorFormatException or CliUsageException or FileNotFoundException or DirectoryNotFoundException
            or ExecutionProviderUnavailableException or CudaUnavailableException or DeviceMemoryException
            or ConfigurationException or RunDirectoryException or Runs.Families.Llama.TaskEnvironmentException
            or InvalidDataException or Tasks.Sandbox.SandboxUnavailableException or Tasks.Database.DatabaseUnavailableException;
}

/// <summary>A command-line value that cannot be used; its message is shown as is.</summary>
internal sealed class CliUsageException(string message) : Exception(message);
