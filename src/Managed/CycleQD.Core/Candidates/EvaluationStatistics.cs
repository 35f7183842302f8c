using CycleQD.Core.Compute;

namespace CycleQD.Core.Candidates;

/// <summary>What scoring one candidate on one task cost.</summary>
/// <param name="ModelCalls">Prompts sent to the model (every round of a dialogue counts).</param>
/// <param name="GeneratedTokens">Tokens the model generated.</param>
/// <param name="GenerateSeconds">Wall-clock seconds spent generating.</param>
/// <param name="HarnessSeconds">Wall-clock seconds spent in the harness (building prompts, running code, SQL or shell, judging).</param>
public sealed record TaskEvaluationStatistics(int ModelCalls, long GeneratedTokens, double GenerateSeconds, double HarnessSeconds);

/// <summary>
/// Implemented by evaluators that can say what an evaluation cost; the engine takes the figures of
/// each child once its scores are in and records them with its generation.
/// </summary>
public interface IEvaluationStatisticsSource
{
    /// <summary>
    /// The per-task figures of the last evaluation of <paramref name="candidate"/> (task order), and
    /// forgets them; null when none were recorded.
    /// </summary>
    IReadOnlyList<TaskEvaluationStatistics>? TakeStatistics(IWeightSet candidate);

    /// <summary>
    /// Who scored the last evaluation of <paramref name="candidate"/> when it was not this process
    /// (a worker's name), and forgets it; null by default.
    /// </summary>
    string? TakeEvaluatedBy(IWeightSet candidate) => null;

    /// <summary>
    /// Seconds the last evaluation of <paramref name="candidate"/> spent handing its weights to the
    /// model (binding them in place, or copying them out of the backend), and forgets them; null when
    /// not measured.
    /// </summary>
    double? TakeBindSeconds(IWeightSet candidate) => null;
}
