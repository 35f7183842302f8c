using CycleQD.Core.Compute;
using CycleQD.Core.Engine;

namespace CycleQD.Core.Candidates;

/// <summary>
/// What the engine knows about a candidate it asks an evaluator to score: an expert's name, or a
/// child's recipe (its plan and mutation key). An evaluator that scores somewhere else (another
/// process, another machine) sends the recipe there instead of the weights.
/// </summary>
/// <param name="Expert">The expert's name when the candidate is a seed expert, else null.</param>
/// <param name="Plan">The child's plan (generation, quality task, parents, crossover weights) when the candidate is a child, else null.</param>
/// <param name="Mutation">The child's mutation key, else null.</param>
public sealed record CandidateContext(string? Expert, BreedingPlan? Plan, MutationKey? Mutation)
{
    /// <summary>Seed expert <paramref name="name"/>.</summary>
    public static CandidateContext ForExpert(string name) => new(name, null, null);

    /// <summary>The child of <paramref name="plan"/>, mutated with <paramref name="mutation"/> under run seed <paramref name="seed"/>.</summary>
    public static CandidateContext ForChild(BreedingPlan plan, MutationKind mutation, ulong seed) =>
        new(null, plan, new MutationKey(mutation, seed, (uint)plan.Generation));
}
