namespace CycleQD.Cli;

/// <summary>A plain-text table with aligned columns (readable when piped, stable for tests).</summary>
internal sealed class TextTable(params string[] headers)
{
    private readonly List<string[]> _rows = [];
    private readonly HashSet<int> _rightAligned = [];

    public TextTable AlignRight(params int[] columns)
    {
        foreach (int c in columns) _rightAligned.Add(c);
        return this;
    }

    public void Add(params string[] cells)
    {
        if (cells.Length != headers.Length) throw new ArgumentException($"row has {cells.Length} cells, table has {headers.Length} columns");
        _rows.Add(cells);
    }

    public void Write(TextWriter w, string indent = "")
    {
        var widths = headers.Select((h, i) => Math.Max(h.Length, _rows.Count == 0 ? 0 : _rows.Max(r => r[i].Length))).ToArray();
        WriteRow(w, indent, headers, widths);
        WriteRow(w, indent, widths.Select(n => new string('-', n)).ToArray(), widths);
        foreach (var r in _rows) WriteRow(w, indent, r, widths);
    }

    private void WriteRow(TextWriter w, string indent, string[] cells, int[] widths)
    {
        var parts = cells.Select((c, i) => _rightAligned.Contains(i) ? c.PadLeft(widths[i]) : c.PadRight(widths[i]));
        w.WriteLine(indent + string.Join("  ", parts).TrimEnd());
    }
}
