using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace CycleQD.Tasks.Python;

/// <summary>String operations with Python's code-point semantics.</summary>
public static class PythonStrings
{
    /// <summary>s[:n] counted in code points (Python), not UTF-16 units.</summary>
    public static string Prefix(string s, int codePoints)
    {
        int units = 0, count = 0;
        while (units < s.Length && count < codePoints)
        {
            units += char.IsHighSurrogate(s[units]) && units + 1 < s.Length && char.IsLowSurrogate(s[units + 1]) ? 2 : 1;
            count++;
        }
        return s[..units];
    }

    /// <summary>len(s) in code points.</summary>
    public static int Length(string s)
    {
        int n = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++;
            n++;
        }
        return n;
    }

    /// <summary>Python's str.strip() (no arguments).</summary>
    public static string Strip(string s) => s.Trim(Prompts.ChatTemplates.PythonWhitespace);

    /// <summary>A .NET regex that treats \s, \d, \w and . the way Python's re does for str patterns (Unicode), except '.' never matching \n as in Python.</summary>
    public static Regex Compile(string pattern, RegexOptions options = RegexOptions.None) =>
        new(pattern, options | RegexOptions.CultureInvariant);

    internal static string ToInvariant(int v) => v.ToString(CultureInfo.InvariantCulture);

    internal static string Utf8Lossy(byte[] bytes, int count) => Encoding.UTF8.GetString(bytes, 0, count);
}
