using System.Text;

namespace CycleQD.Tasks.Prompts;

/// <summary>
/// The two chat templates the reference renders prompts with, written out as code (the Jinja
/// sources are in cycleqd_prompts.json). Both produce text that already carries any BOS, so
/// requests built from them set AddBos = false.
/// </summary>
public static class ChatTemplates
{
    /// <summary>Llama-3's BOS as text.</summary>
    public const string Llama3Bos = "<|begin_of_text|>";

    /// <summary>
    /// fishfarm LLAMA3 (data README §1, §2): per message
    /// <c>&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\n + trim(content) + &lt;|eot_id|&gt;</c>,
    /// BOS before the first, then the assistant header (add_generation_prompt).
    /// </summary>
    public static string Llama3(IReadOnlyList<ChatMessage> messages)
    {
        var b = new StringBuilder(Llama3Bos);
        foreach (var m in messages)
            b.Append("<|start_header_id|>").Append(m.Role).Append("<|end_header_id|>\n\n").Append(JinjaTrim(m.Content)).Append("<|eot_id|>");
        return b.Append("<|start_header_id|>assistant<|end_header_id|>\n\n").ToString();
    }

    /// <summary>
    /// CycleQD's code template for MBPP (data README §3): "system\n\n" + "@@ Instruction:\n" +
    /// user.strip() + "\n\n" + "@@ Response:" (add_generation_prompt), no BOS text.
    /// </summary>
    public static string Mbpp(string systemMessage, string user) =>
        JinjaTrim(systemMessage) + "\n\n" + "@@ Instruction:\n" + JinjaTrim(user) + "\n\n" + "@@ Response:";

    /// <summary>Jinja's trim / Python's str.strip(): removes leading and trailing whitespace.</summary>
    public static string JinjaTrim(string s) => s.Trim(PythonWhitespace);

    /// <summary>The characters Python's str.strip() removes (str.isspace()).</summary>
    internal static readonly char[] PythonWhitespace =
        [' ', '\t', '\n', '\r', '\v', '\f', '\x1c', '\x1d', '\x1e', '\x1f', '\x85', '\u00a0', '\u1680', '\u2000', '\u2001', '\u2002', '\u2003', '\u2004', '\u2005', '\u2006', '\u2007', '\u2008', '\u2009', '\u200a', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000'];
}
