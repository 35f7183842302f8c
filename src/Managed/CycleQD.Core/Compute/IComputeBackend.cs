namespace CycleQD.Core.Compute;

/// <summary>
/// The tensor operations the CycleQD loop needs, on weight sets the backend owns. The CPU backend
/// (CycleQD.Cpu) and a GPU backend implement the same contract and must draw identical random
/// numbers (<see cref="Random.Philox4x32"/>). Weight sets passed to one backend must come from it.
/// All arithmetic is float32 whatever the storage type; results are stored in the storage type of
/// the base weight set (round to nearest even). Calls on one backend are not concurrent.
/// </summary>
public interface IComputeBackend : IDisposable
{
    /// <summary>Name shown in logs ("cpu", "cuda:0").</summary>
    string Name { get; }

    /// <summary>Copies a host model into a new backend weight set (same tensors, order and storage types).</summary>
    IWeightSet Upload(IHostTensorSource source);

    /// <summary>Copies tensor <paramref name="index"/> of <paramref name="set"/> into <paramref name="destination"/> (its storage bytes, exactly <see cref="TensorSpec.ByteLength"/> long).</summary>
    void Download(IWeightSet set, int index, Span<byte> destination);

    /// <summary>
    /// Linear merge of task vectors: child = base + Σᵢ wᵢ (θᵢ − base) / Σᵢ wᵢ, element by element,
    /// streamed tensor by tensor. 1 ≤ parents ≤ 8; every parent has the base's tensor names and
    /// shapes (storage types may differ). Σ wᵢ must be nonzero. Returns a new weight set in the
    /// base's storage types, owned by the caller.
    /// </summary>
    IWeightSet Merge(IWeightSet baseModel, IReadOnlyList<IWeightSet> parents, ReadOnlySpan<float> weights);

    /// <summary>
    /// <see cref="Merge"/> into an existing weight set with the base's layout (names, shapes and
    /// storage types), overwriting all of it. Reusing one child buffer per generation avoids
    /// allocating (and, on the CPU, page-faulting) a whole model each time.
    /// </summary>
    void MergeInto(IWeightSet destination, IWeightSet baseModel, IReadOnlyList<IWeightSet> parents, ReadOnlySpan<float> weights);

    /// <summary>Task vector τ = model − base as a new F32 weight set, owned by the caller.</summary>
    IWeightSet TaskVector(IWeightSet model, IWeightSet baseModel);

    /// <summary>
    /// SVD mutation in place: for each tensor i of <paramref name="child"/> with
    /// <see cref="MutationOptions.Applies"/>, τ = child − base, the top-k singular values are scaled
    /// by (1 + r_j), and child = base + τ'. Random numbers are keyed by (seed, generation, i).
    /// Same-shaped matrices may be processed as a batch.
    /// </summary>
    void MutateSvd(IWeightSet child, IWeightSet baseModel, MutationOptions options, ulong seed, uint generation);

    /// <summary>
    /// Expert-basis SVD mutation in place (<see cref="MutationBasis.Expert"/>): for each tensor i of
    /// <paramref name="child"/> with <see cref="MutationOptions.Applies"/>, child_i += U diag(r ⊙ S) Vᵀ with
    /// U S Vᵀ = <paramref name="basis"/>[i] (the quality task's expert's task-vector SVD) and
    /// r_j = w_max · Uniform(seed, stream i, generation, <see cref="Random.Streams.SvdScale"/>, j), the draws of
    /// <see cref="MutateSvd"/>. <paramref name="baseModel"/> is the run's base (a backend may add the update
    /// to the float32 task vector child − base).
    /// </summary>
    void MutateSvdExpertBasis(IWeightSet child, IWeightSet baseModel, ExpertSvdBasis basis, MutationOptions options, ulong seed, uint generation);

    /// <summary>Gaussian mutation in place: θ += σ · N(0, 1), noise keyed by (seed, generation, tensor index, element).</summary>
    void MutateGaussian(IWeightSet child, MutationOptions options, ulong seed, uint generation);
}
