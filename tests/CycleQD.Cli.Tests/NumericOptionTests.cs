using System.CommandLine;
using System.Globalization;

namespace CycleQD.Cli.Tests;

/// <summary>Every numeric option of every verb, found by walking the command tree, reads numbers the same way.</summary>
public class NumericOptionTests
{
    private static readonly Type[] WholeTypes = [typeof(int), typeof(long), typeof(uint), typeof(ulong), typeof(short), typeof(ushort), typeof(byte), typeof(sbyte)];
    private static readonly Type[] RealTypes = [typeof(double), typeof(float), typeof(decimal)];

    private static Type Underlying(Type t) => Nullable.GetUnderlyingType(t) ?? t;

    private static bool IsNumeric(Option o) => WholeTypes.Contains(Underlying(o.ValueType)) || RealTypes.Contains(Underlying(o.ValueType));

    /// <summary>(command path from the root, option) for every option of every command.</summary>
    private static IEnumerable<(Command[] Path, Option Option)> Walk(Command command, Command[] path)
    {
        foreach (var o in command.Options) yield return (path, o);
        foreach (var sub in command.Subcommands)
            foreach (var x in Walk(sub, [.. path, sub])) yield return x;
    }

    private static List<(Command[] Path, Option Option)> NumericOptions() =>
        Walk(CliApp.BuildRoot(), []).Where(x => x.Path.Length > 0 && IsNumeric(x.Option)).ToList();

    public static TheoryData<string> NumericOptionIds()
    {
        var data = new TheoryData<string>();
        foreach (var (path, o) in NumericOptions()) data.Add(Id(path, o));
        return data;
    }

    private static string Id(Command[] path, Option o) => string.Join(' ', path.Select(c => c.Name)) + " " + o.Name;

    /// <summary>The verb path, its required arguments and options (as "x"), then the option under test and <paramref name="value"/>.</summary>
    private static (string[] Args, Option Option) Invocation(string id, string value)
    {
        var (path, option) = NumericOptions().Single(x => Id(x.Path, x.Option) == id);
        var args = new List<string>();
        foreach (var c in path)
        {
            args.Add(c.Name);
            foreach (var a in c.Arguments)
                for (int i = 0; i < a.Arity.MinimumNumberOfValues; i++) args.Add("x");
        }
        foreach (var o in path[^1].Options.Where(o => o.Required && o != option)) args.AddRange([o.Name, "x"]);
        args.AddRange([option.Name, value]);
        return (args.ToArray(), option);
    }

    private static void AssertOneErrorLine(CliResult r, string expected)
    {
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Equal("", r.Out); // no help text
        Assert.Equal([expected], r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void CommandTree_HasTheKnownNumericOptions_AllMadeByTheSharedHelper()
    {
        var all = NumericOptions();
        var ids = all.Select(x => Id(x.Path, x.Option)).ToList();
        // The walk must reach nested verbs, or the theories below would pass on too little.
        foreach (string known in new[] { "run --generations", "run --seed", "resume --generations", "eval --limit", "generate --temperature",
                     "generate --top-p", "generate bench --new-tokens", "bench kernels --repeats", "bench sam --threads" })
            Assert.Contains(known, ids);
        Assert.All(all, x => Assert.True(CycleQD.Cli.NumericOptions.RangeOf(x.Option) != null,
            $"{Id(x.Path, x.Option)} is not made by NumericOptions, so it would print the parser's type names on a bad value"));
    }

    [Theory]
    [MemberData(nameof(NumericOptionIds))]
    public void NumericOption_NotANumber_OneErrorLineNamingTheOption_Exit1(string id)
    {
        var (args, option) = Invocation(id, "abc");
        bool whole = WholeTypes.Contains(Underlying(option.ValueType));
        AssertOneErrorLine(CliRunner.Run(args), $"error: {option.Name}: 'abc' is {(whole ? "not a whole number" : "not a number")}");
    }

    [Theory]
    [MemberData(nameof(NumericOptionIds))]
    public void NumericOption_BelowItsRange_OneErrorLineWithTheRange(string id)
    {
        var (_, option) = Invocation(id, "0");
        var range = CycleQD.Cli.NumericOptions.RangeOf(option)!;
        bool whole = WholeTypes.Contains(Underlying(option.ValueType));
        double below;
        if (range.Min is { } min) below = whole ? min - 1 : min - 0.5;
        else if (Underlying(option.ValueType) == typeof(ulong)) below = -1; // the type's own lower bound
        else return; // unbounded below: nothing to refuse
        string text = below.ToString(CultureInfo.InvariantCulture);
        var (args, _) = Invocation(id, text);
        var r = CliRunner.Run(args);
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        var line = Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"error: {option.Name}: {text} is out of range: it must be ", line);
        Assert.Equal("", r.Out);
    }

    [Theory]
    [InlineData("run x.yaml --generations 1.5", "error: --generations: '1.5' is not a whole number")]
    [InlineData("run x.yaml -n 3000000000", "error: --generations: 3000000000 is out of range: it must be a whole number from 0 to 2147483647")]
    [InlineData("run x.yaml --seed 18446744073709551616", "error: --seed: 18446744073709551616 is out of range: it must be a whole number from 0 to 18446744073709551615")]
    [InlineData("generate --temperature x", "error: --temperature: 'x' is not a number")]
    [InlineData("generate --temperature NaN", "error: --temperature: 'NaN' is not a number")]
    [InlineData("generate --top-p 0", "error: --top-p: 0 is out of range: it must be in (0, 1]")]
    [InlineData("generate --top-p 1.01", "error: --top-p: 1.01 is out of range: it must be in (0, 1]")]
    [InlineData("bench kernels --repeats 19", "error: --repeats: 19 is out of range: it must be a whole number from 20 to 2147483647")]
    public void BadNumber_ExactMessage(string commandLine, string expected)
    {
        AssertOneErrorLine(CliRunner.Run(commandLine.Split(' ')), expected);
    }

    [Fact]
    public void GoodNumbers_ParseInvariantly()
    {
        var parse = CliApp.BuildRoot().Parse(["generate", "--top-p", "0.5", "--temperature", "1e-1", "--seed", "18446744073709551615", "-n", "7"]);
        Assert.Empty(parse.Errors);
        var generate = parse.CommandResult.Command;
        Assert.Equal(0.5, parse.GetValue((Option<double>)generate.Options.Single(o => o.Name == "--top-p")));
        Assert.Equal(0.1, parse.GetValue((Option<double>)generate.Options.Single(o => o.Name == "--temperature")));
        Assert.Equal(ulong.MaxValue, parse.GetValue((Option<ulong>)generate.Options.Single(o => o.Name == "--seed")));
        Assert.Equal(7, parse.GetValue((Option<int>)generate.Options.Single(o => o.Name == "--max-new-tokens")));
        // Defaults still apply when an option is not given.
        var defaults = CliApp.BuildRoot().Parse(["generate"]);
        Assert.Equal(1.0, defaults.GetValue((Option<double>)defaults.CommandResult.Command.Options.Single(o => o.Name == "--top-p")));
        Assert.Equal(256, defaults.GetValue((Option<int>)defaults.CommandResult.Command.Options.Single(o => o.Name == "--max-new-tokens")));
    }

    [Fact]
    public void UnknownOption_OneErrorLine_NoHelp()
    {
        var r = CliRunner.Run("run", "x.yaml", "--generatons", "5");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Equal("", r.Out);
        Assert.All(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => Assert.StartsWith("error: ", l));
        Assert.Contains("--generatons", r.Err);
    }
}
