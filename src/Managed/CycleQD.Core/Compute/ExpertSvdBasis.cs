namespace CycleQD.Core.Compute;

/// <summary>
/// Rank-k SVD of one row-major m×n float32 matrix: A ≈ U diag(S) Vt.
/// </summary>
/// <param name="Rows">m.</param>
/// <param name="Cols">n.</param>
/// <param name="Rank">k ≤ min(m, n).</param>
/// <param name="U">m×k, row-major (left singular vectors as columns).</param>
/// <param name="S">k singular values, descending.</param>
/// <param name="Vt">k×n, row-major (right singular vectors as rows).</param>
public sealed record SvdFactors(int Rows, int Cols, int Rank, float[] U, float[] S, float[] Vt)
{
    /// <summary>Throws <see cref="ArgumentException"/> naming <paramref name="tensor"/> when the arrays do not have the sizes of an m×n rank-k SVD.</summary>
    public void Check(string tensor)
    {
        if (Rows <= 0 || Cols <= 0 || Rank <= 0 || Rank > Math.Min(Rows, Cols))
            throw new ArgumentException($"tensor '{tensor}': SVD factors of a {Rows}×{Cols} matrix with rank {Rank}");
        if (U.LongLength != (long)Rows * Rank || S.Length != Rank || Vt.LongLength != (long)Rank * Cols)
            throw new ArgumentException($"tensor '{tensor}': SVD factors have {U.LongLength}, {S.Length}, {Vt.LongLength} values; a {Rows}×{Cols} rank-{Rank} SVD needs {(long)Rows * Rank}, {Rank}, {(long)Rank * Cols}");
    }
}

/// <summary>
/// The SVD of one expert's task vector τ = expert − base, per tensor, on the host: the basis of the
/// expert-basis SVD mutation (<see cref="MutationBasis.Expert"/>). Computed once per run; backends
/// read it (the CUDA backend streams each tensor's factors to the device when it mutates).
/// </summary>
public sealed class ExpertSvdBasis
{
    private readonly SvdFactors?[] _factors;

    /// <param name="task">The expert's task (the archive whose generations use this basis).</param>
    /// <param name="tensors">The layout of the weight sets it belongs to.</param>
    /// <param name="factors">Factors per tensor index (null: the tensor is not mutated); one entry per tensor.</param>
    /// <exception cref="ArgumentException">the counts or a factor's shape do not match <paramref name="tensors"/>.</exception>
    public ExpertSvdBasis(string task, IReadOnlyList<TensorSpec> tensors, IReadOnlyList<SvdFactors?> factors)
    {
        if (factors.Count != tensors.Count)
            throw new ArgumentException($"expert SVD of '{task}': {factors.Count} factor entries for {tensors.Count} tensors");
        for (int i = 0; i < tensors.Count; i++)
        {
            var f = factors[i];
            if (f is null) continue;
            f.Check(tensors[i].Name);
            if (tensors[i].Shape.Length != 2 || tensors[i].Shape[0] != f.Rows || tensors[i].Shape[1] != f.Cols)
                throw new ArgumentException($"expert SVD of '{task}': tensor '{tensors[i].Name}' is {tensors[i].ShapeText}, its factors are {f.Rows}×{f.Cols}");
        }
        Task = task;
        Tensors = tensors;
        _factors = [.. factors];
    }

    /// <summary>The expert's task.</summary>
    public string Task { get; }

    /// <summary>The weight-set layout the factors belong to.</summary>
    public IReadOnlyList<TensorSpec> Tensors { get; }

    /// <summary>Factors of tensor <paramref name="index"/>, or null when it has none.</summary>
    public SvdFactors? this[int index] => _factors[index];

    /// <summary>
    /// Factors of tensor <paramref name="index"/> for a mutation that <see cref="MutationOptions.Applies"/> to it.
    /// </summary>
    /// <exception cref="ArgumentException">the basis has none (it was computed under other mutation settings).</exception>
    public SvdFactors Require(int index) => _factors[index]
        ?? throw new ArgumentException($"expert SVD of '{Task}' has no factors for tensor '{Tensors[index].Name}'; it was computed for other mutation settings");

    /// <summary>Throws <see cref="ArgumentException"/> when <paramref name="tensors"/> (a child's layout) differs from the basis's in names or shapes.</summary>
    public void CheckLayout(IReadOnlyList<TensorSpec> tensors)
    {
        if (tensors.Count != Tensors.Count)
            throw new ArgumentException($"expert SVD of '{Task}': {Tensors.Count} tensors, the child has {tensors.Count}");
        for (int i = 0; i < tensors.Count; i++)
            if (tensors[i].Name != Tensors[i].Name || !tensors[i].Shape.AsSpan().SequenceEqual(Tensors[i].Shape))
                throw new ArgumentException($"expert SVD of '{Task}': tensor {i} is '{Tensors[i].Name}' {Tensors[i].ShapeText}, the child's '{tensors[i].Name}' {tensors[i].ShapeText}");
    }
}
