namespace CycleQD.Onnx.Tokenization;

/// <summary>One chat turn.</summary>
/// <param name="Role">"system", "user" or "assistant".</param>
/// <param name="Content">The turn's text.</param>
public sealed record ChatMessage(string Role, string Content);

/// <summary>The chat formats the engine renders.</summary>
public enum ChatFormat
{
    /// <summary>Llama-3: &lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\ncontent&lt;|eot_id|&gt;, BOS before the first turn.</summary>
    Llama3,
    /// <summary>The MBPP code template: system text, then "@@ Instruction:" / "@@ Response:" turns.</summary>
    CodeInstruction,
}

/// <summary>
/// Renders conversations exactly as the Jinja chat templates of these formats do (the Llama-3
/// template and the MBPP code template in data/cycleqd_prompts.json). This is a renderer for those
/// templates only, not a Jinja engine.
/// </summary>
public static class ChatTemplate
{
    /// <summary>Renders <paramref name="messages"/>; <paramref name="bosToken"/> is the BOS text Llama-3 puts first.</summary>
    /// <exception cref="ArgumentException">CodeInstruction turns that do not alternate user/assistant.</exception>
    public static string Render(ChatFormat format, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, string bosToken = "<|begin_of_text|>")
    {
        var sb = new System.Text.StringBuilder();
        switch (format)
        {
            case ChatFormat.Llama3:
                for (int i = 0; i < messages.Count; i++)
                {
                    if (i == 0) sb.Append(bosToken);
                    sb.Append("<|start_header_id|>").Append(messages[i].Role).Append("<|end_header_id|>\n\n")
                      .Append(PythonStrip(messages[i].Content)).Append("<|eot_id|>");
                }
                if (addGenerationPrompt) sb.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
                break;
            case ChatFormat.CodeInstruction:
                int start = 0;
                if (messages.Count > 0 && messages[0].Role == "system")
                {
                    sb.Append(PythonStrip(messages[0].Content)).Append("\n\n");
                    start = 1;
                }
                for (int i = start; i < messages.Count; i++)
                {
                    var m = messages[i];
                    if ((m.Role == "user") != ((i - start) % 2 == 0))
                        throw new ArgumentException("Conversation roles must alternate user/assistant/user/assistant/...");
                    if (m.Role == "user") sb.Append("@@ Instruction:\n").Append(PythonStrip(m.Content)).Append("\n\n");
                    else if (m.Role == "assistant") sb.Append("@@ Response:\n").Append(PythonStrip(m.Content));
                    if (i == messages.Count - 1 && m.Role == "user" && addGenerationPrompt) sb.Append("@@ Response:");
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(format));
        }
        return sb.ToString();
    }

    /// <summary>Detects the format of a Jinja chat template text, or null when it is none the engine knows.</summary>
    public static ChatFormat? Detect(string? template)
    {
        if (template is null) return null;
        if (template.Contains("<|start_header_id|>", StringComparison.Ordinal) && template.Contains("<|eot_id|>", StringComparison.Ordinal)) return ChatFormat.Llama3;
        if (template.Contains("@@ Instruction", StringComparison.Ordinal)) return ChatFormat.CodeInstruction;
        return null;
    }

    /// <summary>The special tokens <paramref name="format"/> writes as text; a model that uses it needs each one as a single token of its vocabulary.</summary>
    public static IReadOnlyList<string> SpecialTokens(ChatFormat format) => format switch
    {
        ChatFormat.Llama3 => ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        _ => [],
    };

    /// <summary>
    /// The special tokens of <paramref name="format"/> that <paramref name="tokenizer"/> does not hold
    /// as single tokens: each would be split into ordinary pieces the model never saw as turn markers.
    /// </summary>
    public static IReadOnlyList<string> MissingSpecialTokens(ChatFormat format, TextTokenizer tokenizer) =>
        SpecialTokens(format).Where(t => !tokenizer.IsSingleToken(t)).ToArray();

    // Jinja's trim and Python's str.strip() remove Unicode whitespace at both ends, as string.Trim() does.
    private static string PythonStrip(string s) => s.Trim();
}
