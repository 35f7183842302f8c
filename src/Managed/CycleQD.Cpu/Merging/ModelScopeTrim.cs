namespace CycleQD.Cpu.Merging;

/// <summary>
/// TIES's magnitude trim over a whole model (the TIES paper's formulation, <c>trim_scope: model</c>):
/// each task vector τᵢ, flattened over every tensor in the order given, keeps exactly its
/// kᵢ entries of largest |τ|; of the entries tied at the kᵢ-th magnitude, those first in that order
/// (earlier tensor, then lower element index). Streams the model two or three times, one tensor at
/// a time (<see cref="MagnitudeThreshold"/>; the third pass, only for an expert whose ties cross the
/// kᵢ-th place, counts the tied entries per tensor).
/// </summary>
public static class ModelScopeTrim
{
    /// <summary>Computes every expert's trim of every tensor.</summary>
    /// <param name="tensorCount">Number of tensors; tensor t is the t-th of the flattened order.</param>
    /// <param name="keep">kᵢ per expert (≥ 0).</param>
    /// <param name="baseTensor">The base's values of tensor t (float32, row-major).</param>
    /// <param name="expertTensor">Expert i's values of tensor t, of the base's length.</param>
    /// <returns>Per expert the model-wide cut, and per expert and tensor the cut of that tensor (for <see cref="TaskVectorMerges.TiesTrimmed"/>).</returns>
    public static ModelScopeTrimResult Compute(int tensorCount, IReadOnlyList<long> keep,
        Func<int, ReadOnlyMemory<float>> baseTensor, Func<int, int, ReadOnlyMemory<float>> expertTensor)
    {
        ArgumentNullException.ThrowIfNull(keep);
        int experts = keep.Count;
        var selectors = keep.Select(k => new MagnitudeThreshold(k)).ToArray();
        for (int pass = 0; pass < 2; pass++)
        {
            var active = Enumerable.Range(0, experts).Where(i => pass == 0 || selectors[i].NeedsFinePass).ToArray();
            if (active.Length == 0) break;
            for (int t = 0; t < tensorCount; t++)
            {
                var b = baseTensor(t).Span;
                foreach (int i in active)
                {
                    var e = expertTensor(i, t).Span;
                    if (pass == 0) selectors[i].CountCoarse(b, e);
                    else selectors[i].CountFine(b, e);
                }
            }
        }

        var whole = selectors.Select(s => s.Cut).ToArray();
        var perTensor = new TrimCut[experts][];
        var split = new List<int>();
        for (int i = 0; i < experts; i++)
        {
            perTensor[i] = new TrimCut[tensorCount];
            Array.Fill(perTensor[i], whole[i]);
            if (whole[i].TiesKept != MagnitudeThreshold.AllTies && whole[i].TiesKept > 0) split.Add(i);
        }
        if (split.Count > 0)
        {
            var left = split.ToDictionary(i => i, i => whole[i].TiesKept);
            for (int t = 0; t < tensorCount; t++)
            {
                var b = baseTensor(t).Span;
                foreach (int i in split)
                {
                    var e = expertTensor(i, t).Span;
                    float thr = whole[i].Threshold;
                    long ties = 0;
                    for (int j = 0; j < e.Length; j++)
                        if (MathF.Abs(e[j] - b[j]) == thr) ties++;
                    long kept = Math.Min(ties, left[i]);
                    left[i] -= kept;
                    perTensor[i][t] = new TrimCut(thr, kept == ties ? MagnitudeThreshold.AllTies : kept);
                }
            }
        }
        return new ModelScopeTrimResult(whole, perTensor);
    }
}

/// <summary>What <see cref="ModelScopeTrim.Compute"/> found.</summary>
/// <param name="Model">Per expert: the kᵢ-th largest |τ| over the model and how many entries tied at it are kept.</param>
/// <param name="PerTensor">Per expert, per tensor: the same threshold, with the tied entries kept in that tensor.</param>
public sealed record ModelScopeTrimResult(IReadOnlyList<TrimCut> Model, IReadOnlyList<TrimCut[]> PerTensor);
