using System.Globalization;
using System.Text;

namespace CycleQD.Tasks.Python;

/// <summary>
/// Python's <c>repr()</c> of the values a database cursor returns, so that text shown to the model
/// (and compared as text) reads exactly as the reference's <c>str(cursor.fetchall())</c>.
/// </summary>
public static class PythonRepr
{
    /// <summary>repr() of a str: single quotes unless the text has ' and no ", escapes for \\, the quote, \t \n \r and non-printable characters.</summary>
    public static string Str(string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var b = new StringBuilder(s.Length + 2).Append(quote);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            int cp = c;
            if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                cp = char.ConvertToUtf32(c, s[i + 1]);
                if (IsPrintable(cp)) b.Append(c).Append(s[i + 1]);
                else b.Append(CultureInfo.InvariantCulture, $"\\U{cp:x8}");
                i++;
                continue;
            }
            switch (c)
            {
                case '\\': b.Append("\\\\"); continue;
                case '\n': b.Append("\\n"); continue;
                case '\r': b.Append("\\r"); continue;
                case '\t': b.Append("\\t"); continue;
            }
            if (c == quote) { b.Append('\\').Append(c); continue; }
            if (IsPrintable(cp)) b.Append(c);
            else if (cp < 0x100) b.Append(CultureInfo.InvariantCulture, $"\\x{cp:x2}");
            else b.Append(CultureInfo.InvariantCulture, $"\\u{cp:x4}");
        }
        return b.Append(quote).ToString();
    }

    /// <summary>Python's str.isprintable for one code point: not Cc, Cf, Cs, Co, Cn, Zl, Zp, and no Zs other than the space.</summary>
    private static bool IsPrintable(int cp)
    {
        if (cp == ' ') return true;
        if (cp < 0x20 || cp == 0x7f) return false;
        if (cp >= 0xD800 && cp <= 0xDFFF) return false;
        var cat = CharUnicodeInfo.GetUnicodeCategory(cp);
        return cat switch
        {
            UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse
                or UnicodeCategory.OtherNotAssigned or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator
                or UnicodeCategory.SpaceSeparator => false,
            _ => true,
        };
    }

    /// <summary>repr() (= str()) of a Python float: shortest round-trip digits, fixed notation for decimal exponents in [-4, 16), else d.ddde±XX; integral values keep ".0".</summary>
    public static string Float(double v)
    {
        if (double.IsNaN(v)) return "nan";
        if (double.IsPositiveInfinity(v)) return "inf";
        if (double.IsNegativeInfinity(v)) return "-inf";
        if (v == 0) return double.IsNegative(v) ? "-0.0" : "0.0";
        // Shortest round-trip digits: .NET Core's "R" gives them; take mantissa digits and exponent from it.
        string shortest = v.ToString("R", CultureInfo.InvariantCulture);
        bool neg = shortest.StartsWith('-');
        if (neg) shortest = shortest[1..];
        int exp10;
        string digits;
        int ePos = shortest.IndexOfAny(['E', 'e']);
        string mant = ePos >= 0 ? shortest[..ePos] : shortest;
        int expPart = ePos >= 0 ? int.Parse(shortest[(ePos + 1)..], CultureInfo.InvariantCulture) : 0;
        int dot = mant.IndexOf('.');
        string intPart = dot >= 0 ? mant[..dot] : mant;
        string fracPart = dot >= 0 ? mant[(dot + 1)..] : "";
        digits = (intPart + fracPart).TrimStart('0');
        int leadingZeros = (intPart + fracPart).Length - (intPart + fracPart).TrimStart('0').Length;
        // Position of the decimal point relative to the start of `digits`.
        int pointPos = intPart.Length - leadingZeros + expPart;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        exp10 = pointPos - 1; // scientific exponent
        string body;
        if (exp10 >= -4 && exp10 < 16)
        {
            if (pointPos <= 0) body = "0." + new string('0', -pointPos) + digits;
            else if (pointPos >= digits.Length) body = digits + new string('0', pointPos - digits.Length) + ".0";
            else body = digits[..pointPos] + "." + digits[pointPos..];
        }
        else
        {
            string m = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
            body = m + "e" + (exp10 < 0 ? "-" : "+") + Math.Abs(exp10).ToString("00", CultureInfo.InvariantCulture);
        }
        return neg ? "-" + body : body;
    }

    /// <summary>repr() of one cursor value: None, int, float, Decimal('…'), str, bytes, datetime.date/datetime.</summary>
    /// <param name="value">The value as MySqlConnector returns it.</param>
    /// <param name="mySqlTypeName">The column's type name (distinguishes DATE from DATETIME).</param>
    public static string Value(object? value, string? mySqlTypeName = null) => value switch
    {
        null or DBNull => "None",
        string s => Str(s),
        bool b => b ? "1" : "0",
        sbyte or byte or short or ushort or int or uint or long or ulong => Convert.ToString(value, CultureInfo.InvariantCulture)!,
        float f => Float(f),
        double d => Float(d),
        decimal m => $"Decimal('{m.ToString(CultureInfo.InvariantCulture)}')",
        byte[] bytes => Bytes(bytes),
        DateTime dt when string.Equals(mySqlTypeName, "DATE", StringComparison.OrdinalIgnoreCase) => $"datetime.date({dt.Year}, {dt.Month}, {dt.Day})",
        DateTime dt => DateTimeRepr(dt),
        TimeSpan ts => $"datetime.timedelta(days={ts.Days}, seconds={ts.Hours * 3600 + ts.Minutes * 60 + ts.Seconds})",
        _ => Str(Convert.ToString(value, CultureInfo.InvariantCulture) ?? ""),
    };

    private static string DateTimeRepr(DateTime dt)
    {
        var parts = new List<int> { dt.Year, dt.Month, dt.Day, dt.Hour, dt.Minute };
        int micro = (int)(dt.Ticks % TimeSpan.TicksPerSecond / 10);
        if (dt.Second != 0 || micro != 0) parts.Add(dt.Second);
        if (micro != 0) parts.Add(micro);
        return "datetime.datetime(" + string.Join(", ", parts) + ")";
    }

    private static string Bytes(byte[] bytes)
    {
        bool hasSingle = bytes.Contains((byte)'\''), hasDouble = bytes.Contains((byte)'"');
        char quote = hasSingle && !hasDouble ? '"' : '\'';
        var b = new StringBuilder("b").Append(quote);
        foreach (byte x in bytes)
        {
            if (x == '\\') b.Append("\\\\");
            else if (x == quote) b.Append('\\').Append((char)x);
            else if (x == '\n') b.Append("\\n");
            else if (x == '\r') b.Append("\\r");
            else if (x == '\t') b.Append("\\t");
            else if (x < 0x20 || x >= 0x7f) b.Append(CultureInfo.InvariantCulture, $"\\x{x:x2}");
            else b.Append((char)x);
        }
        return b.Append(quote).ToString();
    }

    /// <summary>str() of a list of row tuples, as <c>str(cursor.fetchall())</c>: "[('a', 1), ('b',)]".</summary>
    public static string Rows(IReadOnlyList<IReadOnlyList<string>> rowsOfReprs)
    {
        var b = new StringBuilder("[");
        for (int i = 0; i < rowsOfReprs.Count; i++)
        {
            if (i > 0) b.Append(", ");
            var row = rowsOfReprs[i];
            b.Append('(').Append(string.Join(", ", row));
            if (row.Count == 1) b.Append(',');
            b.Append(')');
        }
        return b.Append(']').ToString();
    }

    /// <summary>str() of a JSON scalar as Python's json module would load it (str as is, int digits, float repr, True/False/None).</summary>
    public static string JsonScalarToStr(System.Text.Json.JsonElement e) => e.ValueKind switch
    {
        System.Text.Json.JsonValueKind.String => e.GetString()!,
        System.Text.Json.JsonValueKind.Number => IsJsonInteger(e.GetRawText()) ? System.Numerics.BigInteger.Parse(e.GetRawText(), CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture) : Float(e.GetDouble()),
        System.Text.Json.JsonValueKind.True => "True",
        System.Text.Json.JsonValueKind.False => "False",
        System.Text.Json.JsonValueKind.Null => "None",
        _ => throw new FormatException("expected a JSON scalar, got " + e.ValueKind),
    };

    private static bool IsJsonInteger(string raw) => !raw.Contains('.') && !raw.Contains('e') && !raw.Contains('E');
}
