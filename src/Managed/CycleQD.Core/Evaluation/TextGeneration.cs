namespace CycleQD.Core.Evaluation;

/// <summary>How stop strings are looked for while a sequence is generated.</summary>
public enum StopStringMatch
{
    /// <summary>
    /// As vLLM 0.3.0 (the reference's pinned version): after each token the decoded output (the
    /// continuation only, special tokens skipped, held back while it ends in an incomplete UTF-8
    /// character) is checked, stop string by stop string in list order, for whether it ENDS with
    /// the stop string; the first that does is cut off the end. A stop string that a token brings
    /// in with more text after it (e.g. "Response:\n" in one token) is therefore not seen.
    /// </summary>
    EndOfOutput,

    /// <summary>The earliest occurrence of any stop string anywhere in the continuation cuts it there.</summary>
    FirstOccurrence,
}

/// <summary>One prompt to continue.</summary>
/// <param name="Prompt">The full prompt text, already rendered from any chat template.</param>
/// <param name="MaxNewTokens">Most tokens to generate.</param>
/// <param name="StopStrings">Generation stops when one of these is found (see <paramref name="StopMatch"/>); the stop string is not returned.</param>
/// <param name="AddBos">
/// true: prepend the tokenizer's BOS id once; false: none (the text may still carry it, e.g. a
/// rendered template's "&lt;|begin_of_text|&gt;"); null: encode as the tokenizer does by default
/// (tokenizer.json's post-processor, or add_bos_token of a Llama tokenizer class), which is what
/// the reference's vLLM does with a text prompt.
/// </param>
/// <param name="Temperature">0 = greedy (argmax); otherwise softmax temperature.</param>
/// <param name="TopP">Nucleus sampling mass (1 = off); used only when Temperature &gt; 0.</param>
/// <param name="Seed">Sampling seed; used only when Temperature &gt; 0.</param>
/// <param name="MaxModelLen">
/// Context limit as vLLM's max_model_len (null = none): a prompt of more tokens gets an empty
/// result (finish Length), and generation ends once prompt + generated tokens exceed it, so the
/// model never reads a position at or beyond it.
/// </param>
/// <param name="StopMatch">Where stop strings are looked for.</param>
public sealed record GenerationRequest(
    string Prompt,
    int MaxNewTokens = 512,
    IReadOnlyList<string>? StopStrings = null,
    bool? AddBos = true,
    double Temperature = 0.0,
    double TopP = 1.0,
    ulong Seed = 0,
    int? MaxModelLen = null,
    StopStringMatch StopMatch = StopStringMatch.EndOfOutput);

/// <summary>Why generation of one sequence ended.</summary>
public enum GenerationFinish
{
    /// <summary>An end-of-sequence id was produced (not included in the text).</summary>
    Eos,
    /// <summary>A stop string was reached (not included in the text).</summary>
    Stop,
    /// <summary>MaxNewTokens was reached.</summary>
    Length,
}

/// <summary>The continuation of one prompt.</summary>
/// <param name="Text">Decoded continuation only (never the prompt).</param>
/// <param name="TokenIds">Generated ids, including any cut by a stop string.</param>
/// <param name="Finish">Why it ended.</param>
public sealed record GenerationResult(string Text, IReadOnlyList<int> TokenIds, GenerationFinish Finish);

/// <summary>
/// Continues prompts with one model. Implementations batch the whole list; results are in request
/// order, and greedy requests (Temperature 0) are deterministic.
/// </summary>
public interface ITextGenerator
{
    /// <summary>Generates a continuation for every request.</summary>
    Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, CancellationToken cancellationToken = default);
}
