using CycleQD.Core.Compute;
using CycleQD.Cpu.Kernels;
using CycleQD.Tensors;

namespace CycleQD.Cpu.Linalg;

/// <summary>
/// Computes the basis of the expert-basis SVD mutation: the SVD of τ = expert − base for every
/// tensor the mutation <see cref="MutationOptions.Applies"/> to, on the host through LAPACKE_sgesdd
/// (exact thin SVD, truncated to svd_rank when it is set; svd_method does not apply, since this runs
/// once per run). Works with the weight sets of any backend: tensors are read back with
/// <see cref="IComputeBackend.Download"/>, so both backends mutate with bit-identical factors.
/// </summary>
public static class ExpertSvdFactorization
{
    /// <param name="task">The expert's task.</param>
    /// <param name="backend">The backend owning <paramref name="expert"/> and <paramref name="baseModel"/>.</param>
    /// <param name="expert">The expert's weights.</param>
    /// <param name="baseModel">The base's weights (same names and shapes).</param>
    /// <param name="options">Which tensors (<see cref="MutationOptions.Applies"/>) and the rank (svd_rank; 0 = full).</param>
    /// <param name="progress">Receives one line per decomposed tensor (null: nothing).</param>
    public static ExpertSvdBasis Compute(string task, IComputeBackend backend, IWeightSet expert, IWeightSet baseModel, MutationOptions options,
        Action<string>? progress = null)
    {
        var specs = baseModel.Tensors;
        if (expert.Tensors.Count != specs.Count)
            throw new ArgumentException($"expert '{task}': {expert.Tensors.Count} tensors, the base has {specs.Count}");
        var factors = new SvdFactors?[specs.Count];
        for (int i = 0; i < specs.Count; i++)
        {
            var spec = specs[i];
            if (expert.Tensors[i].Name != spec.Name || !expert.Tensors[i].Shape.AsSpan().SequenceEqual(spec.Shape))
                throw new ArgumentException($"expert '{task}': tensor {i} is '{expert.Tensors[i].Name}' {expert.Tensors[i].ShapeText}, the base's '{spec.Name}' {spec.ShapeText}");
            if (!options.Applies(spec)) continue;
            int m = checked((int)spec.Shape[0]), n = checked((int)spec.Shape[1]);
            var tau = ReadF32(backend, expert, i);
            var b = ReadF32(backend, baseModel, i);
            for (long e = 0; e < tau.LongLength; e++) tau[e] -= b[e];
            foreach (float x in tau)
                if (!float.IsFinite(x)) throw new NonFiniteWeightsException(spec.Name, $"non-finite values in the task vector of expert '{task}'");
            var svd = Svd.Full(tau, m, n, options.SvdRank);
            factors[i] = new SvdFactors(m, n, svd.K, CompactU(svd, m), svd.S, svd.Vt);
            progress?.Invoke($"expert SVD {task}: {spec.Name} {m}×{n} rank {svd.K}");
        }
        return new ExpertSvdBasis(task, specs, factors);
    }

    private static float[] ReadF32(IComputeBackend backend, IWeightSet set, int tensor)
    {
        var spec = set.Tensors[tensor];
        var bytes = new byte[spec.ByteLength];
        backend.Download(set, tensor, bytes);
        var values = new float[spec.ElementCount];
        StorageConversion.Load(bytes, spec.DType, values);
        return values;
    }

    /// <summary>U's first k columns as a dense m×k array (sgesdd leaves U with row stride min(m, n)).</summary>
    private static float[] CompactU(SvdResult svd, int m)
    {
        if (svd.LdU == svd.K) return svd.U;
        var u = new float[(long)m * svd.K];
        for (int row = 0; row < m; row++)
            Array.Copy(svd.U, (long)row * svd.LdU, u, (long)row * svd.K, svd.K);
        return u;
    }
}
