using CycleQD.Core.Archives;

namespace CycleQD.Core.Engine;

/// <summary>The decisions that define a child: its parents and crossover weights (mutation draws follow from seed and generation).</summary>
/// <param name="Generation">Generation number.</param>
/// <param name="QualityTask">Quality task of the archive the parents came from (<see cref="Archive.MeanTask"/> without the cycle).</param>
/// <param name="Parents">Parent elite ids.</param>
/// <param name="Weights">Crossover weights wᵢ, parallel to <paramref name="Parents"/>.</param>
public sealed record BreedingPlan(int Generation, int QualityTask, IReadOnlyList<string> Parents, IReadOnlyList<float> Weights);

/// <summary>An occupied cell.</summary>
public sealed record CellState(int Cell, Elite Elite);

/// <summary>One archive's cells, ascending by cell index.</summary>
public sealed record ArchiveState(int Task, IReadOnlyList<CellState> Cells);

/// <summary>A seed expert and its scores.</summary>
public sealed record ExpertState(string Name, IReadOnlyList<double> Scores);

/// <summary>
/// Everything needed to continue a run exactly: the generation counter, the archives, the bins, the
/// expert scores and the breeding plans in flight. The random state is (seed, generation) alone:
/// every draw is a Philox block addressed by them, so there is no hidden generator state.
/// </summary>
/// <param name="Seed">Run seed.</param>
/// <param name="NextGeneration">First generation not yet applied.</param>
/// <param name="Bins">BC bins per task.</param>
/// <param name="Experts">Seed experts and their scores.</param>
/// <param name="Archives">One per task, or the one mean-quality archive (task <see cref="Archive.MeanTask"/>) without the cycle.</param>
/// <param name="InFlight">Plans drawn but not applied yet, ascending by generation.</param>
public sealed record RunState(ulong Seed, int NextGeneration, IReadOnlyList<BinSpec> Bins, IReadOnlyList<ExpertState> Experts,
    IReadOnlyList<ArchiveState> Archives, IReadOnlyList<BreedingPlan> InFlight);

/// <summary>Where a child was inserted.</summary>
/// <param name="Task">Archive (quality task) index, <see cref="Archive.MeanTask"/> for the mean-quality archive.</param>
/// <param name="Cell">Flat cell index.</param>
public sealed record Insertion(int Task, int Cell);

/// <summary>One archive's summary after a generation.</summary>
/// <param name="Task">Quality task index, <see cref="Archive.MeanTask"/> for the mean-quality archive.</param>
/// <param name="Elites">Occupied cells.</param>
/// <param name="QdScore">Sum of qualities.</param>
/// <param name="Coverage">Occupied fraction of cells.</param>
/// <param name="Best">Best quality.</param>
public sealed record ArchiveSummary(int Task, int Elites, double QdScore, double Coverage, double Best);

/// <summary>Wall-clock figures of a generation (seconds); kept apart so runs compare without them.</summary>
/// <param name="BreedSeconds">Merge and mutation.</param>
/// <param name="EvaluateSeconds">Waiting for the child's scores.</param>
/// <param name="TotalSeconds">Whole step, commit included.</param>
/// <param name="FinishedUtc">When the generation was applied.</param>
public sealed record GenerationTiming(double BreedSeconds, double EvaluateSeconds, double TotalSeconds, DateTime FinishedUtc);

/// <summary>What one generation did.</summary>
/// <param name="Generation">Generation number.</param>
/// <param name="QualityTask">Quality task index (<see cref="Archive.MeanTask"/> without the cycle).</param>
/// <param name="Parents">Parent ids.</param>
/// <param name="Weights">Crossover weights.</param>
/// <param name="Scores">Child's score per task.</param>
/// <param name="ChildId">Stored id when the child entered an archive, else null.</param>
/// <param name="Insertions">Cells the child took.</param>
/// <param name="Archives">Per-archive summary after the generation.</param>
/// <param name="Timing">Wall-clock figures.</param>
/// <param name="NonFinite">When the child's weights overflowed to NaN or ∞ (it then scores 0 and enters no archive):
/// the tensor and what was found; null for a finite child.</param>
/// <param name="Evaluation">Per task, what scoring the child cost, when the evaluator reports it (<see cref="Candidates.IEvaluationStatisticsSource"/>).</param>
/// <param name="EvaluatedBy">Who scored the child when it was not this process (a worker's name), else null.</param>
/// <param name="BindSeconds">Seconds spent handing the child's weights to the evaluator's model, when the evaluator measures it.</param>
/// <param name="PeakDeviceBytes">The most device memory the compute backend held at once since the previous generation was applied
/// (its own allocations: weight sets, staging, mutation workspace; not the evaluator's), when it counts them (<see cref="Compute.IDeviceMemoryGauge"/>).</param>
public sealed record GenerationRecord(int Generation, int QualityTask, IReadOnlyList<string> Parents, IReadOnlyList<float> Weights,
    IReadOnlyList<double> Scores, string? ChildId, IReadOnlyList<Insertion> Insertions, IReadOnlyList<ArchiveSummary> Archives,
    GenerationTiming Timing, string? NonFinite = null, IReadOnlyList<Candidates.TaskEvaluationStatistics>? Evaluation = null,
    string? EvaluatedBy = null, double? BindSeconds = null, long? PeakDeviceBytes = null);

/// <summary>Receives the state after initialisation (record null) and after every generation, before unreferenced elites are deleted.</summary>
public interface ICheckpointSink
{
    /// <summary>Persists <paramref name="state"/> (and <paramref name="record"/> when not null) durably before returning.</summary>
    void Commit(RunState state, GenerationRecord? record);
}
