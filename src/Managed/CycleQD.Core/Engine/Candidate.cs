using CycleQD.Core.Compute;

namespace CycleQD.Core.Engine;

/// <summary>
/// Where a child's mutation noise comes from: every draw is a Philox block keyed by
/// (<paramref name="Seed"/>, <paramref name="Generation"/>, tensor index), so the same key gives
/// the same mutation on every backend.
/// </summary>
/// <param name="Kind">Mutation applied (none, SVD or Gaussian).</param>
/// <param name="Seed">Run seed.</param>
/// <param name="Generation">Generation whose stream was used.</param>
public sealed record MutationKey(MutationKind Kind, ulong Seed, uint Generation);

/// <summary>
/// A child bred by <see cref="CycleQDEngine.Ask"/> and waiting for its scores
/// (<see cref="CycleQDEngine.Tell"/>). Its recipe is what the push loop would have used for the
/// same generation: same parents, crossover weights and mutation key.
/// </summary>
/// <remarks>
/// Ownership: <see cref="Weights"/> belongs to the engine. It stays valid, and unchanged, until the
/// candidate is told (the engine then reuses its memory for a later child) or the engine is
/// disposed. Do not dispose it; copy out with <see cref="IComputeBackend.Download"/> what must
/// outlive that.
/// </remarks>
/// <param name="Id">Handle to pass to <see cref="CycleQDEngine.Tell"/>.</param>
/// <param name="Generation">Generation the child belongs to.</param>
/// <param name="QualityTask">Index of the archive the parents were drawn from.</param>
/// <param name="Parents">Parent elite ids (experts appear as <see cref="CycleQDEngine.ExpertId"/>).</param>
/// <param name="CrossoverWeights">Crossover weights, parallel to <paramref name="Parents"/>.</param>
/// <param name="Mutation">The mutation applied after crossover.</param>
/// <param name="Weights">The child's weights on the engine's backend (engine-owned; see remarks).</param>
/// <param name="NonFinite">Set when the child overflowed to NaN or ∞ while it was bred: it will score 0 on
/// every task whatever is told (tell it anyway, so the generation commits); null for a finite child.</param>
public sealed record Candidate(string Id, int Generation, int QualityTask, IReadOnlyList<string> Parents,
    IReadOnlyList<float> CrossoverWeights, MutationKey Mutation, IWeightSet Weights, string? NonFinite);
