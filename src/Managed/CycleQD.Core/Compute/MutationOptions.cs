namespace CycleQD.Core.Compute;

/// <summary>Which mutation follows the crossover.</summary>
public enum MutationKind
{
    /// <summary>No mutation.</summary>
    None,
    /// <summary>Scale the task vector's top-k singular values (the paper's operator).</summary>
    Svd,
    /// <summary>Add N(0, σ²) noise to the weights (the reference code's default).</summary>
    Gaussian,
}

/// <summary>Whose singular vectors the SVD mutation uses.</summary>
public enum MutationBasis
{
    /// <summary>The child's own task vector τ = child − base: its top-k singular values become σ_j (1 + r_j); one SVD per matrix per child.</summary>
    Child,
    /// <summary>
    /// The reference's operator: child += U diag(r ⊙ S) Vᵀ where U S Vᵀ is the SVD of the generation's quality-task
    /// expert's task vector (computed once per run), which pulls the child a random part of the way towards that expert.
    /// </summary>
    Expert,
}

/// <summary>How the SVD of a task-vector matrix is computed.</summary>
public enum SvdMethod
{
    /// <summary>Randomized when k ≤ min(m, n)/4, else full.</summary>
    Auto,
    /// <summary>LAPACK-style full (thin) SVD.</summary>
    Full,
    /// <summary>Randomized truncated SVD (range finder with power iterations).</summary>
    Randomized,
}

/// <summary>
/// Mutation settings.
/// SVD mutation, basis child: for every eligible 2-D tensor, τ = child − base = U Σ Vᵀ, and the top-k singular
/// values become σ_j (1 + r_j), r_j = w_max · Uniform(j) from stream (seed, generation, tensor index),
/// purpose <see cref="Random.Streams.SvdScale"/>; 1-D tensors are untouched.
/// SVD mutation, basis expert: child += U_k diag(r ⊙ S_k) V_kᵀ with U S Vᵀ the SVD of the quality task's expert's
/// task vector and the same r_j draws; eligible are the 2-D tensors whose name does not contain "norm" (the
/// reference skips those), minus embed_tokens/lm_head unless <see cref="IncludeEmbeddings"/>.
/// Gaussian mutation: θ += σ · Normal(e) for element e of each eligible tensor (any rank), purpose
/// <see cref="Random.Streams.GaussianNoise"/>.
/// </summary>
/// <param name="Kind">Which mutation.</param>
/// <param name="SvdScaleMax">w_max ≥ 0 (default 0.3).</param>
/// <param name="SvdRank">k: number of top components scaled; 0 = full rank.</param>
/// <param name="SvdMethod">Full, randomized or automatic.</param>
/// <param name="PowerIterations">Power iterations of the randomized SVD (default 3).</param>
/// <param name="Oversampling">Extra sketch columns p of the randomized SVD; −1 (default) = max(10, k/2). Measured on an
/// H200 (docs/perf.md): rank 256 of a 4096×14336 matrix with a slowly decaying spectrum needs p = k/2, q = 3 for top-256
/// singular values within 1e-3 (11× faster than full gesvd); p = 16, q = 2 is off by 7e-2.</param>
/// <param name="GaussianStd">σ ≥ 0 of the Gaussian mutation.</param>
/// <param name="IncludeEmbeddings">Whether tensors named *embed_tokens* or *lm_head* are mutated (default false).</param>
/// <param name="Basis">Whose singular vectors the SVD mutation uses (default <see cref="MutationBasis.Child"/>).</param>
public sealed record MutationOptions(MutationKind Kind = MutationKind.Svd, double SvdScaleMax = 0.3, int SvdRank = 0,
    SvdMethod SvdMethod = SvdMethod.Auto, int PowerIterations = 3, int Oversampling = -1, double GaussianStd = 0.0,
    bool IncludeEmbeddings = false, MutationBasis Basis = MutationBasis.Child)
{
    /// <summary>Throws <see cref="ConfigurationException"/> on unusable values.</summary>
    public void Validate()
    {
        if (!(SvdScaleMax >= 0)) throw new ConfigurationException($"mutation.svd_scale_max = {SvdScaleMax}, must be ≥ 0");
        if (SvdRank < 0) throw new ConfigurationException($"mutation.svd_rank = {SvdRank}, must be ≥ 0 (0 = full rank)");
        if (PowerIterations < 0) throw new ConfigurationException($"mutation.power_iterations = {PowerIterations}, must be ≥ 0");
        if (Oversampling < -1) throw new ConfigurationException($"mutation.oversampling = {Oversampling}, must be ≥ 0 (or -1: max(10, k/2))");
        if (!(GaussianStd >= 0)) throw new ConfigurationException($"mutation.sigma = {GaussianStd}, must be ≥ 0");
        if (!Enum.IsDefined(Basis)) throw new ConfigurationException($"mutation.basis = {(int)Basis}, must be child or expert");
    }

    /// <summary>The oversampling p used for a rank-<paramref name="rank"/> randomized SVD.</summary>
    public int OversamplingFor(int rank) => Oversampling >= 0 ? Oversampling : Math.Max(10, rank / 2);

    /// <summary>Whether the tensor <paramref name="spec"/> is subject to mutation of this kind.</summary>
    public bool Applies(TensorSpec spec)
    {
        if (!IncludeEmbeddings && (spec.Name.Contains("embed_tokens", StringComparison.Ordinal) || spec.Name.Contains("lm_head", StringComparison.Ordinal)))
            return false;
        return Kind switch
        {
            MutationKind.Svd => spec.Shape.Length == 2 && spec.Shape[0] > 0 && spec.Shape[1] > 0
                                && (Basis == MutationBasis.Child || !spec.Name.Contains("norm", StringComparison.Ordinal)),
            MutationKind.Gaussian => true,
            _ => false,
        };
    }
}
