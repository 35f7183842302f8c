using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace CycleQD.Cli;

/// <summary>The values a numeric option accepts: optional bounds, each inclusive unless marked exclusive.</summary>
/// <param name="Min">Lower bound, or null.</param>
/// <param name="Max">Upper bound, or null.</param>
/// <param name="MinExclusive">The lower bound itself is not accepted.</param>
/// <param name="MaxExclusive">The upper bound itself is not accepted.</param>
internal sealed record NumericRange(double? Min = null, double? Max = null, bool MinExclusive = false, bool MaxExclusive = false)
{
    /// <summary>Any value of the option's type.</summary>
    public static readonly NumericRange Any = new();

    /// <summary>At least <paramref name="min"/>.</summary>
    public static NumericRange AtLeast(double min) => new(min);

    /// <summary>Whether <paramref name="value"/> lies inside.</summary>
    public bool Contains(double value) =>
        (Min is not { } lo || (MinExclusive ? value > lo : value >= lo)) && (Max is not { } hi || (MaxExclusive ? value < hi : value <= hi));

    /// <summary>"≥ 1", "in (0, 1]", and the like.</summary>
    public override string ToString()
    {
        var inv = CultureInfo.InvariantCulture;
        return (Min, Max) switch
        {
            ({ } lo, { } hi) => $"in {(MinExclusive ? "(" : "[")}{lo.ToString(inv)}, {hi.ToString(inv)}{(MaxExclusive ? ")" : "]")}",
            ({ } lo, null) => $"{(MinExclusive ? ">" : "≥")} {lo.ToString(inv)}",
            (null, { } hi) => $"{(MaxExclusive ? "<" : "≤")} {hi.ToString(inv)}",
            _ => "any number",
        };
    }
}

/// <summary>
/// Creates every numeric option of the CLI, so that all verbs read numbers the same way: invariant
/// culture, a whole number where one is needed, the option's range, and on a bad value one message
/// that names the option ("--generations: 'abc' is not a whole number") instead of the parser's
/// type names. The parse error is reported by <see cref="CliApp"/> without the help text.
/// </summary>
internal static class NumericOptions
{
    private static readonly ConditionalWeakTable<Option, NumericRange> Ranges = new();

    /// <summary>The range of an option made here; null for an option made otherwise.</summary>
    public static NumericRange? RangeOf(Option option) => Ranges.TryGetValue(option, out var r) ? r : null;

    /// <summary>A whole-number option with a default (<typeparamref name="T"/>: int, long, ulong, …).</summary>
    public static Option<T> Whole<T>(string name, string description, T defaultValue, NumericRange? range = null, params string[] aliases)
        where T : struct, IBinaryInteger<T>, IMinMaxValue<T>
    {
        var r = range ?? NumericRange.Any;
        var option = new Option<T>(name, aliases)
        {
            Description = description,
            DefaultValueFactory = _ => defaultValue,
            CustomParser = a => ParseWhole<T>(a, name, r) ?? default,
        };
        Ranges.Add(option, r);
        return option;
    }

    /// <summary>A whole-number option that is null when not given.</summary>
    public static Option<T?> OptionalWhole<T>(string name, string description, NumericRange? range = null, params string[] aliases)
        where T : struct, IBinaryInteger<T>, IMinMaxValue<T>
    {
        var r = range ?? NumericRange.Any;
        var option = new Option<T?>(name, aliases)
        {
            Description = description,
            CustomParser = a => ParseWhole<T>(a, name, r),
        };
        Ranges.Add(option, r);
        return option;
    }

    /// <summary>A real-number option (finite; NaN and infinity are refused) with a default.</summary>
    public static Option<double> Real(string name, string description, double defaultValue, NumericRange? range = null, params string[] aliases)
    {
        var r = range ?? NumericRange.Any;
        var option = new Option<double>(name, aliases)
        {
            Description = description,
            DefaultValueFactory = _ => defaultValue,
            CustomParser = a => ParseReal(a, name, r) ?? default,
        };
        Ranges.Add(option, r);
        return option;
    }

    private static T? ParseWhole<T>(ArgumentResult result, string name, NumericRange range)
        where T : struct, IBinaryInteger<T>, IMinMaxValue<T>
    {
        string text = Single(result);
        if (!BigInteger.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
        {
            result.AddError($"{name}: '{text}' is not a whole number");
            return null;
        }
        // The type's own limits are part of the range the user is told about.
        var typeMin = BigInteger.CreateChecked(T.MinValue);
        var typeMax = BigInteger.CreateChecked(T.MaxValue);
        if (value < typeMin || value > typeMax || !range.Contains((double)value))
        {
            var inv = CultureInfo.InvariantCulture;
            var lo = range.Min is { } l ? BigInteger.Max(typeMin, new BigInteger(l) + (range.MinExclusive ? 1 : 0)) : typeMin;
            var hi = range.Max is { } h ? BigInteger.Min(typeMax, new BigInteger(h) - (range.MaxExclusive ? 1 : 0)) : typeMax;
            result.AddError($"{name}: {text} is out of range: it must be a whole number from {lo.ToString(inv)} to {hi.ToString(inv)}");
            return null;
        }
        return T.CreateChecked(value);
    }

    private static double? ParseReal(ArgumentResult result, string name, NumericRange range)
    {
        string text = Single(result);
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || !double.IsFinite(value))
        {
            result.AddError($"{name}: '{text}' is not a number");
            return null;
        }
        if (!range.Contains(value))
        {
            result.AddError($"{name}: {text} is out of range: it must be {range}");
            return null;
        }
        return value;
    }

    // An option of one value has exactly one token; the parser enforces the arity before this runs.
    private static string Single(ArgumentResult result) => result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
}
