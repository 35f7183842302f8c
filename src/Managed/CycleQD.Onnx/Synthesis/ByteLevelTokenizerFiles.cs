using System.Text;
using System.Text.Json;
using CycleQD.Tensors;

namespace CycleQD.Onnx.Synthesis;

/// <summary>
/// Writes a byte-level BPE tokenizer without merges: every byte of the text is one token (ids
/// 0–255), and Llama-3's special tokens keep their ids (128000 begin_of_text, 128001 end_of_text,
/// 128006/128007 the role header, 128009 eot_id), so a Llama-3 chat prompt renders and encodes as
/// it does with the real tokenizer, only with more tokens for the text (about four per word).
/// Ids 256–127999 are byte pairs and three-character strings that encoding never produces (there are no
/// merges) but decoding renders, so whatever a random model generates decodes to text of about the
/// length real tokens have. Used for synthesized models when no tokenizer is given to copy.
/// </summary>
public static class ByteLevelTokenizerFiles
{
    /// <summary>Ids below this are ordinary tokens; Llama-3's special tokens start here.</summary>
    public const int OrdinaryTokens = 128000;

    /// <summary>Id of "&lt;|begin_of_text|&gt;".</summary>
    public const int BeginOfText = 128000;
    /// <summary>Id of "&lt;|end_of_text|&gt;".</summary>
    public const int EndOfText = 128001;
    /// <summary>Id of "&lt;|eot_id|&gt;", the end of a chat turn.</summary>
    public const int EndOfTurn = 128009;

    private static readonly (int Id, string Content)[] Specials =
    [
        (BeginOfText, "<|begin_of_text|>"), (EndOfText, "<|end_of_text|>"),
        (128006, "<|start_header_id|>"), (128007, "<|end_header_id|>"), (EndOfTurn, "<|eot_id|>"),
    ];

    // Llama-3's pre-tokenizer split (contractions, letter runs, up to three digits, punctuation runs, whitespace).
    private const string SplitRegex =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    // The Llama-3 chat format: each message as a header block ended by eot_id, then the assistant header.
    private const string ChatTemplate =
        "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n" +
        "{{ message['content'] | trim }}<|eot_id|>{% endfor %}" +
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

    /// <summary>Writes tokenizer.json and tokenizer_config.json (with the chat template) into <paramref name="directory"/>.</summary>
    public static void Write(string directory)
    {
        SafetensorsWriter.WriteAtomically(Path.Combine(directory, "tokenizer.json"), WriteTokenizerJson);
        SafetensorsWriter.WriteAtomically(Path.Combine(directory, "tokenizer_config.json"), stream =>
        {
            using var w = new Utf8JsonWriter(stream, ReadableJson.Writer(indented: true));
            w.WriteStartObject();
            w.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
            w.WriteString("bos_token", "<|begin_of_text|>");
            w.WriteString("eos_token", "<|eot_id|>");
            w.WriteString("chat_template", ChatTemplate);
            w.WriteNumber("model_max_length", 8192);
            w.WriteEndObject();
        });
    }

    private static void WriteTokenizerJson(Stream stream)
    {
        using var w = new Utf8JsonWriter(stream, ReadableJson.Writer(indented: true));
        w.WriteStartObject();
        w.WriteString("version", "1.0");
        w.WriteNull("truncation");
        w.WriteNull("padding");
        w.WriteStartArray("added_tokens");
        foreach (var (id, content) in Specials)
        {
            w.WriteStartObject();
            w.WriteNumber("id", id);
            w.WriteString("content", content);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNull("normalizer");

        w.WriteStartObject("pre_tokenizer");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("pretokenizers");
        w.WriteStartObject();
        w.WriteString("type", "Split");
        w.WriteStartObject("pattern");
        w.WriteString("Regex", SplitRegex);
        w.WriteEndObject();
        w.WriteString("behavior", "Isolated");
        w.WriteBoolean("invert", false);
        w.WriteEndObject();
        WriteByteLevel(w, addPrefixSpace: false, trimOffsets: true, useRegex: false);
        w.WriteEndArray();
        w.WriteEndObject();

        w.WritePropertyName("post_processor");
        WriteByteLevel(w, addPrefixSpace: true, trimOffsets: false, useRegex: true);
        w.WritePropertyName("decoder");
        WriteByteLevel(w, addPrefixSpace: true, trimOffsets: true, useRegex: true);

        w.WriteStartObject("model");
        w.WriteString("type", "BPE");
        w.WriteNull("dropout");
        w.WriteNull("unk_token");
        w.WriteBoolean("fuse_unk", false);
        w.WriteBoolean("byte_fallback", false);
        w.WriteBoolean("ignore_merges", false);
        w.WriteStartObject("vocab");
        int next = 0;
        foreach (string token in OrdinaryVocabulary()) w.WriteNumber(token, next++);
        w.WriteEndObject();
        w.WriteStartArray("merges");
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteByteLevel(Utf8JsonWriter w, bool addPrefixSpace, bool trimOffsets, bool useRegex)
    {
        w.WriteStartObject();
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", addPrefixSpace);
        w.WriteBoolean("trim_offsets", trimOffsets);
        w.WriteBoolean("use_regex", useRegex);
        w.WriteEndObject();
    }

    // Triples are drawn from lower-case letters, digits, space and three punctuation marks (40³ = 64,000 ≥ the 62,208 needed).
    private const string TripleAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789 _.,";

    /// <summary>The 256 single bytes, then all byte pairs, then triples of <see cref="TripleAlphabet"/>, up to <see cref="OrdinaryTokens"/> strings.</summary>
    internal static IEnumerable<string> OrdinaryVocabulary()
    {
        var symbols = ByteSymbols();
        int count = 0;
        foreach (var s in symbols) { yield return s; count++; }
        foreach (var a in symbols)
            foreach (var b in symbols) { yield return a + b; count++; }
        foreach (char a in TripleAlphabet)
            foreach (char b in TripleAlphabet)
                foreach (char c in TripleAlphabet)
                {
                    if (count++ == OrdinaryTokens) yield break;
                    yield return symbols[a] + symbols[b] + symbols[c];
                }
    }

    /// <summary>
    /// The byte-level alphabet: printable Latin-1 bytes stand for themselves, the other 68 bytes
    /// (controls, space, DEL, NBSP, soft hyphen) take the code points from U+0100 up, in byte order.
    /// </summary>
    internal static string[] ByteSymbols()
    {
        var result = new string[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            result[b] = new Rune(printable ? b : next++).ToString();
        }
        return result;
    }
}
