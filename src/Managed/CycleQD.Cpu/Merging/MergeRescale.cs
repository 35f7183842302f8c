namespace CycleQD.Cpu.Merging;

/// <summary>How a sparsified task vector is scaled back up after entries were dropped or trimmed.</summary>
public enum MergeRescale
{
    /// <summary>Kept entries are left as they are.</summary>
    None,

    /// <summary>
    /// The kept entries of each task vector are scaled so that, over the tensor, Σ|τ̂| equals the
    /// Σ|τ| it had before sparsifying: gain = Σ|τ| / Σ|τ̂|, left at 1 when either sum is below 1e-7.
    /// mergekit's <c>rescale: true</c> (its default for DARE).
    /// </summary>
    L1Norm,

    /// <summary>Kept entries × 1/density, the DARE paper's rescale (Yu et al., 2024): preserves Σ|τ| in expectation only.</summary>
    InverseDensity,
}
