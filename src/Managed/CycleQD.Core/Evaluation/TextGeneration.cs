namespace CycleQD.Core.Evaluation;

/// <summary>One prompt to continue.</summary>
/// <param name="Prompt">The full prompt text, already rendered from any chat template.</param>
/// <param name="MaxNewTokens">Most tokens to generate.</param>
/// <param name="StopStrings">Generation stops before the first occurrence of any of these in the continuation (the stop string is not returned).</param>
/// <param name="AddBos">Prepend the tokenizer's BOS id (false when the rendered template already carries it as text).</param>
/// <param name="Temperature">0 = greedy (argmax); otherwise softmax temperature.</param>
/// <param name="TopP">Nucleus sampling mass (1 = off); used only when Temperature &gt; 0.</param>
/// <param name="Seed">Sampling seed; used only when Temperature &gt; 0.</param>
public sealed record GenerationRequest(
    string Prompt,
    int MaxNewTokens = 512,
    IReadOnlyList<string>? StopStrings = null,
    bool AddBos = true,
    double Temperature = 0.0,
    double TopP = 1.0,
    ulong Seed = 0);

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
