using CycleQD.Core.Compute;

namespace CycleQD.Runs.Families;

/// <summary>
/// A run evaluator that also scores the experiment's report.retention tasks: tasks the search does not
/// optimise, scored on their test split for every row of the final table.
/// </summary>
internal interface IRetentionEvaluator
{
    /// <summary>Scores of <paramref name="candidate"/> on every retention task, in report.retention order (units per task: accuracy, or nats per token for perplexity).</summary>
    Task<double[]> EvaluateRetentionAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken);
}
