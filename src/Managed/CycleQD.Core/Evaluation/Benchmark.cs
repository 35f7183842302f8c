namespace CycleQD.Core.Evaluation;

/// <summary>The judged outcome of one benchmark sample.</summary>
/// <param name="Id">Sample id as the benchmark names it (e.g. "Mbpp/2", "17").</param>
/// <param name="Correct">Verdict.</param>
/// <param name="Prompt">The first prompt sent to the model.</param>
/// <param name="Transcript">Every model turn and environment reply, in order.</param>
/// <param name="Reason">Why it passed or failed (e.g. "answer mismatch: got 3, expected 4").</param>
public sealed record SampleOutcome(string Id, bool Correct, string Prompt, IReadOnlyList<string> Transcript, string Reason);

/// <summary>A benchmark's verdict on one model.</summary>
/// <param name="Task">Task name, e.g. "mbpp", "agentbench_db", "tinyskills/code".</param>
/// <param name="Score">The quality used by CycleQD, in [0, 1].</param>
/// <param name="Metrics">Further named numbers (e.g. "plus_pass@1").</param>
/// <param name="Samples">Per-sample details, in sample order.</param>
public sealed record EvaluationReport(string Task, double Score, IReadOnlyDictionary<string, double> Metrics, IReadOnlyList<SampleOutcome> Samples);

/// <summary>Progress of an evaluation: samples judged so far out of the total.</summary>
public readonly record struct EvaluationProgress(string Task, int Done, int Total);

/// <summary>
/// A benchmark harness: prompts a model through <see cref="ITextGenerator"/> (all prompts of a
/// round in one batch), judges the answers exactly as the benchmark does, and reports a score in [0, 1].
/// </summary>
public interface IBenchmark
{
    /// <summary>Task name.</summary>
    string Name { get; }

    /// <summary>Runs the benchmark on the model behind <paramref name="generator"/>.</summary>
    Task<EvaluationReport> EvaluateAsync(ITextGenerator generator, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default);
}
