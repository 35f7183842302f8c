using CycleQD.Core.Compute;

namespace CycleQD.Core.Candidates;

/// <summary>
/// Scores a candidate model on every task of the experiment. An LLM evaluator wraps an
/// <see cref="Evaluation.ITextGenerator"/> bound to the candidate and runs one
/// <see cref="Evaluation.IBenchmark"/> per task; the synthetic one computes scores in closed form.
/// </summary>
public interface ICandidateEvaluator
{
    /// <summary>Task names, in the order scores are returned.</summary>
    IReadOnlyList<string> TaskNames { get; }

    /// <summary>
    /// Scores of <paramref name="candidate"/> on every task, each in [0, 1]. The candidate belongs to
    /// <paramref name="backend"/> and stays owned by the caller, alive until the task completes.
    /// Must be deterministic for a given candidate, or exact resume does not hold.
    /// </summary>
    Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken);

    /// <summary>
    /// As <see cref="EvaluateAsync(IComputeBackend, IWeightSet, CancellationToken)"/>, with what the
    /// engine knows of the candidate (<paramref name="context"/>: an expert's name or a child's
    /// recipe). The engine calls this overload; by default it ignores the context.
    /// </summary>
    Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CandidateContext context, CancellationToken cancellationToken) =>
        EvaluateAsync(backend, candidate, cancellationToken);
}
