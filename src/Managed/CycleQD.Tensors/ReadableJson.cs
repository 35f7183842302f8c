using System.Text.Encodings.Web;
using System.Text.Json;

namespace CycleQD.Tensors;

/// <summary>
/// Options for JSON files meant for people (run files, reports, eval details, model folders):
/// System.Text.Json's default encoder writes ' as \u0027 and every non-ASCII letter as \uXXXX, which
/// makes prompts and transcripts unreadable. These write them as themselves; the output is still
/// valid JSON (quotes, backslashes and control characters stay escaped). Not for JSON embedded in HTML.
/// </summary>
public static class ReadableJson
{
    /// <summary>The encoder: only what JSON itself requires is escaped.</summary>
    public static JavaScriptEncoder Encoder => JavaScriptEncoder.UnsafeRelaxedJsonEscaping;

    /// <summary>Serializer options, one line per document.</summary>
    public static readonly JsonSerializerOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Serializer options, indented.</summary>
    public static readonly JsonSerializerOptions Indented = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, WriteIndented = true };

    /// <summary>Writer options for <see cref="Utf8JsonWriter"/>.</summary>
    public static JsonWriterOptions Writer(bool indented) => new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, Indented = indented };
}
