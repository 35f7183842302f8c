using System.Globalization;
using System.Text;

namespace CycleQD.Runs.Merging;

/// <summary>
/// Markdown for a model folder's README.md: YAML front matter (the base model and tags, as the
/// Hugging Face Hub reads them), a title, then sections.
/// </summary>
public sealed class ModelCardText
{
    private readonly StringBuilder _body = new();
    private readonly string _title;
    private readonly string? _baseModel;
    private readonly string[] _tags;

    /// <summary>A card titled <paramref name="title"/>; <paramref name="baseModel"/> goes into the front matter.</summary>
    public ModelCardText(string title, string? baseModel, params string[] tags)
    {
        _title = title;
        _baseModel = baseModel;
        _tags = tags;
    }

    /// <summary>Adds a paragraph.</summary>
    public ModelCardText Paragraph(string text)
    {
        _body.Append(text).Append("\n\n");
        return this;
    }

    /// <summary>Adds a level-2 heading.</summary>
    public ModelCardText Heading(string text) => Paragraph("## " + text);

    /// <summary>Adds a table; cells are escaped for Markdown (pipes).</summary>
    public ModelCardText Table(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        _body.Append("| ").Append(string.Join(" | ", header.Select(Escape))).Append(" |\n");
        _body.Append('|').Append(string.Concat(header.Select(_ => "---|"))).Append('\n');
        foreach (var row in rows) _body.Append("| ").Append(string.Join(" | ", row.Select(Escape))).Append(" |\n");
        _body.Append('\n');
        return this;
    }

    /// <summary>Adds a fenced code block.</summary>
    public ModelCardText Code(string language, string text)
    {
        _body.Append("```").Append(language).Append('\n').Append(text.TrimEnd('\n')).Append("\n```\n\n");
        return this;
    }

    /// <summary>A number as the card shows it (invariant culture, up to 6 significant digits).</summary>
    public static string Number(double x) => x.ToString("G6", CultureInfo.InvariantCulture);

    /// <summary>The whole card.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder("---\n");
        if (_baseModel != null) sb.Append("base_model: ").Append(Quote(_baseModel)).Append('\n');
        sb.Append("library_name: transformers\n");
        if (_tags.Length > 0)
        {
            sb.Append("tags:\n");
            foreach (var t in _tags) sb.Append("- ").Append(t).Append('\n');
        }
        sb.Append("---\n\n# ").Append(_title).Append("\n\n").Append(_body);
        return sb.ToString().TrimEnd('\n') + "\n";
    }

    private static string Escape(string cell) => cell.Replace("|", "\\|").Replace("\n", " ");

    private static string Quote(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
}
