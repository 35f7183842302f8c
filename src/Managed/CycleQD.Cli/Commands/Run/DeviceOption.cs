using System.CommandLine;
using CycleQD.Runs;

namespace CycleQD.Cli.Commands.Run;

/// <summary>`--device auto|cpu|cuda`, shared by run and resume.</summary>
internal static class DeviceOption
{
    private const string Name = "--device";

    public static Option<string> Create() => new(Name)
    {
        Description = "Compute backend: auto (CUDA when usable, else CPU with a notice), cpu, or cuda (an error without a usable GPU).",
        DefaultValueFactory = _ => "auto",
    };

    /// <exception cref="Core.ConfigurationException">a value other than auto, cpu or cuda.</exception>
    public static ComputeDevice Parse(ParseResult parse) =>
        BackendSelection.Parse(parse.GetValue<string>(Name) ?? "auto");
}
