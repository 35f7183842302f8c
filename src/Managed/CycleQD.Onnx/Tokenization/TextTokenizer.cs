using System.Text.Json;
using System.Text.RegularExpressions;
using CycleQD.Tensors;
using Microsoft.ML.Tokenizers;

namespace CycleQD.Onnx.Tokenization;

/// <summary>
/// A model folder's tokenizer: Hugging Face tokenizer.json (byte-level BPE, e.g. Llama-3) or a
/// SentencePiece tokenizer.model (e.g. Llama-2, stories260K), behind one encode/decode surface.
/// Encoding never adds BOS/EOS; callers prepend <see cref="BosId"/> when a request asks for it.
/// </summary>
public sealed class TextTokenizer
{
    private readonly Tokenizer _inner;
    private readonly bool _sentencePiece;
    private readonly HashSet<int> _specialIds;

    /// <summary>Beginning-of-sequence id, or null when the tokenizer has none.</summary>
    public int? BosId { get; }

    /// <summary>Text of the BOS token (e.g. "&lt;|begin_of_text|&gt;"), used by chat templates.</summary>
    public string BosToken { get; }

    /// <summary>The tokenizer file that was loaded.</summary>
    public string Path { get; }

    private TextTokenizer(Tokenizer inner, bool sentencePiece, int? bosId, string bosToken, IEnumerable<int> specialIds, string path)
    {
        _inner = inner;
        _sentencePiece = sentencePiece;
        BosId = bosId;
        BosToken = bosToken;
        _specialIds = [.. specialIds];
        Path = path;
    }

    /// <summary>Token ids of <paramref name="text"/> (special-token strings in the text map to their ids).</summary>
    public IReadOnlyList<int> Encode(string text)
    {
        if (text.Length == 0) return [];
        return _inner is SentencePieceTokenizer sp
            ? sp.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false)
            : _inner.EncodeToIds(text);
    }

    /// <summary>Whether <paramref name="text"/> is one token of the vocabulary (a special token the tokenizer knows encodes to exactly its id).</summary>
    public bool IsSingleToken(string text) => text.Length > 0 && Encode(text).Count == 1;

    /// <summary>Text of <paramref name="ids"/>; special tokens are dropped when <paramref name="skipSpecial"/>.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecial = false)
    {
        var list = skipSpecial ? ids.Where(i => !_specialIds.Contains(i)).ToList() : ids.ToList();
        if (list.Count == 0) return "";
        return _inner switch
        {
            SentencePieceTokenizer sp => sp.Decode(list, considerSpecialTokens: !skipSpecial),
            BpeTokenizer bpe => bpe.Decode(list, considerSpecialTokens: !skipSpecial),
            _ => _inner.Decode(list),
        };
    }

    /// <summary>
    /// Text that <paramref name="generated"/> adds after <paramref name="prompt"/>: decoded in
    /// context, so a leading space or a multi-token character is rendered as it is in the whole text.
    /// </summary>
    public string DecodeContinuation(IReadOnlyList<int> prompt, IReadOnlyList<int> generated)
    {
        if (generated.Count == 0) return "";
        if (prompt.Count == 0 || _sentencePiece && prompt.All(_specialIds.Contains))
            return Decode(generated, skipSpecial: true);
        string head = Decode(prompt, skipSpecial: true);
        string all = Decode([.. prompt, .. generated], skipSpecial: true);
        return all.StartsWith(head, StringComparison.Ordinal) ? all[head.Length..] : Decode(generated, skipSpecial: true);
    }

    /// <summary>Loads tokenizer.json when the folder has one, else tokenizer.model.</summary>
    /// <exception cref="TensorFormatException">neither file exists, or the file cannot be read as a tokenizer.</exception>
    public static TextTokenizer Load(HfModelFolder folder)
    {
        string? json = folder.FindFile("tokenizer.json");
        if (json != null) return LoadHuggingFaceJson(json, folder);
        string? model = folder.FindFile("tokenizer.model");
        if (model != null) return LoadSentencePiece(model, folder);
        throw new TensorFormatException(folder.Directory, null, "no tokenizer: the folder has neither tokenizer.json nor tokenizer.model");
    }

    /// <summary>Loads a SentencePiece model file (BOS from config.json, else id 1).</summary>
    public static TextTokenizer LoadSentencePiece(string path, HfModelFolder? folder = null)
    {
        try
        {
            using var stream = File.OpenRead(path);
            var sp = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false);
            int bos = folder?.Config.BosTokenId ?? sp.BeginningOfSentenceId;
            var specials = new[] { sp.BeginningOfSentenceId, sp.EndOfSentenceId, sp.UnknownId };
            return new TextTokenizer(sp, true, bos, sp.BeginningOfSentenceToken, specials, path);
        }
        catch (Exception e) when (e is not TensorFormatException and not IOException)
        {
            throw new TensorFormatException(path, null, "not a readable SentencePiece model: " + e.Message, e);
        }
    }

    /// <summary>Loads a Hugging Face tokenizer.json whose model is byte-level BPE (Llama-3 style).</summary>
    public static TextTokenizer LoadHuggingFaceJson(string path, HfModelFolder? folder = null)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new TensorFormatException(path, null, "invalid JSON: " + e.Message, e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (!root.TryGetProperty("model", out var model) || model.GetProperty("type").GetString() != "BPE")
                throw new TensorFormatException(path, null, "only \"model\": {\"type\": \"BPE\"} tokenizers are supported");
            string pre = root.TryGetProperty("pre_tokenizer", out var p) ? p.GetRawText() : "";
            if (!pre.Contains("\"ByteLevel\"", StringComparison.Ordinal))
                throw new TensorFormatException(path, null, "only byte-level BPE tokenizers (a ByteLevel pre_tokenizer) are supported");

            var vocab = new List<KeyValuePair<string, int>>();
            foreach (var e in model.GetProperty("vocab").EnumerateObject()) vocab.Add(new(e.Name, e.Value.GetInt32()));
            var merges = new List<string>();
            foreach (var m in model.GetProperty("merges").EnumerateArray())
                merges.Add(m.ValueKind == JsonValueKind.Array ? m[0].GetString() + " " + m[1].GetString() : m.GetString()!);
            var special = new Dictionary<string, int>(StringComparer.Ordinal);
            if (root.TryGetProperty("added_tokens", out var added))
                foreach (var t in added.EnumerateArray()) special[t.GetProperty("content").GetString()!] = t.GetProperty("id").GetInt32();

            string pattern = SplitPattern(p) ?? throw new TensorFormatException(path, null, "pre_tokenizer has no Split regex (the engine needs the model's split pattern)");
            var options = new BpeOptions(vocab)
            {
                Merges = merges,
                SpecialTokens = special,
                ByteLevel = true,
                PreTokenizer = new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), special),
            };
            var bpe = BpeTokenizer.Create(options);

            string bosToken = ReadTokenizerConfigString(folder, "bos_token") ?? "<|begin_of_text|>";
            int? bos = folder?.Config.BosTokenId ?? (special.TryGetValue(bosToken, out int b) ? b : null);
            return new TextTokenizer(bpe, false, bos, bosToken, special.Values, path);
        }
    }

    private static string? SplitPattern(JsonElement pre)
    {
        if (pre.ValueKind != JsonValueKind.Object) return null;
        if (pre.TryGetProperty("type", out var t) && t.GetString() == "Split" && pre.TryGetProperty("pattern", out var pat) && pat.TryGetProperty("Regex", out var rx))
            return rx.GetString();
        if (pre.TryGetProperty("pretokenizers", out var list))
            foreach (var item in list.EnumerateArray())
                if (SplitPattern(item) is string s) return s;
        return null;
    }

    private static string? ReadTokenizerConfigString(HfModelFolder? folder, string key)
    {
        string? path = folder?.FindFile("tokenizer_config.json");
        if (path is null) return null;
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        if (!doc.RootElement.TryGetProperty(key, out var v)) return null;
        return v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object when v.TryGetProperty("content", out var c) => c.GetString(),
            _ => null,
        };
    }
}
