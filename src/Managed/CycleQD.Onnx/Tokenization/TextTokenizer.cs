using System.Text.Json;
using System.Text.RegularExpressions;
using CycleQD.Tensors;
using Microsoft.ML.Tokenizers;

namespace CycleQD.Onnx.Tokenization;

/// <summary>
/// A model folder's tokenizer: Hugging Face tokenizer.json (byte-level BPE, e.g. Llama-3) or a
/// SentencePiece tokenizer.model (e.g. Llama-2, stories260K), behind one encode/decode surface.
/// <see cref="Encode"/> never adds BOS/EOS; <see cref="EncodeWithDefaults"/> adds what the tokenizer
/// files say a Hugging Face tokenizer adds by default (<see cref="DefaultPrefixIds"/>, <see cref="DefaultSuffixIds"/>).
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

    /// <summary>The tokenizer's end-of-sequence id (tokenizer_config.json eos_token, or the SentencePiece model's), or null when it names none.</summary>
    public int? EosId { get; }

    /// <summary>Ids the tokenizer puts before the text when encoding with special tokens (e.g. BOS), from its files.</summary>
    public IReadOnlyList<int> DefaultPrefixIds { get; }

    /// <summary>Ids the tokenizer puts after the text when encoding with special tokens (e.g. EOS), from its files.</summary>
    public IReadOnlyList<int> DefaultSuffixIds { get; }

    /// <summary>The largest token id the tokenizer can produce (vocabulary and special tokens): a model's vocabulary must be larger.</summary>
    public int MaxTokenId { get; }

    /// <summary>Where <see cref="DefaultPrefixIds"/> and <see cref="DefaultSuffixIds"/> come from, in words (for docs and logs).</summary>
    public string DefaultsSource { get; }

    private TextTokenizer(Tokenizer inner, bool sentencePiece, int? bosId, string bosToken, int? eosId, IEnumerable<int> specialIds, string path,
        SpecialTokenDefaults defaults)
    {
        _inner = inner;
        _sentencePiece = sentencePiece;
        BosId = bosId;
        BosToken = bosToken;
        EosId = eosId;
        _specialIds = [.. specialIds];
        Path = path;
        DefaultPrefixIds = defaults.Prefix;
        DefaultSuffixIds = defaults.Suffix;
        DefaultsSource = defaults.Source;
        IEnumerable<int> vocabulary = inner switch
        {
            BpeTokenizer bpe => bpe.Vocabulary.Values,
            SentencePieceTokenizer sp => sp.Vocabulary.Values,
            _ => [],
        };
        MaxTokenId = vocabulary.Concat(_specialIds).DefaultIfEmpty(-1).Max();
    }

    /// <summary>Token ids of <paramref name="text"/> as the Hugging Face tokenizer encodes it by default (add_special_tokens=True).</summary>
    public IReadOnlyList<int> EncodeWithDefaults(string text) => [.. DefaultPrefixIds, .. Encode(text), .. DefaultSuffixIds];

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
            int eos = sp.EndOfSentenceId;
            // Hugging Face's LlamaTokenizer: add_bos_token defaults to true, add_eos_token to false.
            var defaults = LlamaClassDefaults(folder, bos, eos, "tokenizer.model (LlamaTokenizer defaults)")!;
            return new TextTokenizer(sp, true, bos, sp.BeginningOfSentenceToken, eos, specials, path, defaults);
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
            string? eosToken = ReadTokenizerConfigString(folder, "eos_token");
            int? eos = eosToken is not null && special.TryGetValue(eosToken, out int eosSpecial) ? eosSpecial
                : eosToken is not null && vocab.Find(kv => kv.Key == eosToken) is { Key: not null } v ? v.Value : null;
            // A Llama tokenizer class rebuilds the post-processor from add_bos_token/add_eos_token;
            // any other (Llama-3's PreTrainedTokenizerFast) runs tokenizer.json's own.
            var defaults = (bos is int bosId && LlamaClassDefaults(folder, bosId, eos, "tokenizer_config.json tokenizer_class") is { } llama)
                ? llama
                : PostProcessorDefaults(root, path);
            return new TextTokenizer(bpe, false, bos, bosToken, eos, special.Values, path, defaults);
        }
    }

    private sealed record SpecialTokenDefaults(int[] Prefix, int[] Suffix, string Source);

    /// <summary>
    /// The defaults of Hugging Face's LlamaTokenizer / LlamaTokenizerFast (add_bos_token true,
    /// add_eos_token false unless tokenizer_config.json says otherwise), or null when the folder's
    /// tokenizer_class is another one (a tokenizer.model folder always counts as LlamaTokenizer).
    /// </summary>
    private static SpecialTokenDefaults? LlamaClassDefaults(HfModelFolder? folder, int bos, int? eos, string source)
    {
        string? cls = ReadTokenizerConfigString(folder, "tokenizer_class");
        bool sentencePieceSource = source.StartsWith("tokenizer.model", StringComparison.Ordinal);
        if (!sentencePieceSource && cls is not ("LlamaTokenizer" or "LlamaTokenizerFast")) return null;
        bool addBos = ReadTokenizerConfigBool(folder, "add_bos_token") ?? true;
        bool addEos = ReadTokenizerConfigBool(folder, "add_eos_token") ?? false;
        return new SpecialTokenDefaults(addBos ? [bos] : [], addEos && eos is int e ? [e] : [],
            $"{source}: add_bos_token={addBos.ToString().ToLowerInvariant()}, add_eos_token={addEos.ToString().ToLowerInvariant()}");
    }

    /// <summary>What tokenizer.json's post_processor adds around one sequence: TemplateProcessing's special tokens, nothing for ByteLevel or none.</summary>
    private static SpecialTokenDefaults PostProcessorDefaults(JsonElement root, string path)
    {
        if (!root.TryGetProperty("post_processor", out var pp) || pp.ValueKind != JsonValueKind.Object)
            return new([], [], "tokenizer.json: no post_processor");
        var template = FindTemplateProcessing(pp);
        if (template is not JsonElement t)
            return new([], [], $"tokenizer.json: post_processor {pp.GetProperty("type").GetString()} adds no special tokens");
        var prefix = new List<int>();
        var suffix = new List<int>();
        bool seenSequence = false;
        foreach (var item in t.GetProperty("single").EnumerateArray())
        {
            if (item.TryGetProperty("Sequence", out _)) { seenSequence = true; continue; }
            if (!item.TryGetProperty("SpecialToken", out var st)) continue;
            string id = st.GetProperty("id").GetString()!;
            if (!t.TryGetProperty("special_tokens", out var specials) || !specials.TryGetProperty(id, out var entry))
                throw new TensorFormatException(path, null, $"post_processor template names special token '{id}' that its special_tokens do not define");
            foreach (var x in entry.GetProperty("ids").EnumerateArray()) (seenSequence ? suffix : prefix).Add(x.GetInt32());
        }
        return new([.. prefix], [.. suffix], "tokenizer.json: post_processor TemplateProcessing");
    }

    private static JsonElement? FindTemplateProcessing(JsonElement pp)
    {
        string? type = pp.TryGetProperty("type", out var ty) ? ty.GetString() : null;
        if (type == "TemplateProcessing") return pp;
        if (type == "Sequence" && pp.TryGetProperty("processors", out var list))
            foreach (var p in list.EnumerateArray())
                if (FindTemplateProcessing(p) is JsonElement found) return found;
        return null;
    }

    private static bool? ReadTokenizerConfigBool(HfModelFolder? folder, string key)
    {
        string? path = folder?.FindFile("tokenizer_config.json");
        if (path is null) return null;
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return doc.RootElement.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;
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
