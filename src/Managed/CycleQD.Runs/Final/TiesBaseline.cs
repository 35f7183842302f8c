using CycleQD.Core.Compute;
using CycleQD.Cpu.Merging;
using CycleQD.Tensors;

namespace CycleQD.Runs.Final;

/// <summary>
/// The TIES baseline of the report, built on the host from the model files: each task vector
/// τᵢ = expertᵢ − base is trimmed to exactly its ⌊density · n⌋ entries of largest magnitude over the
/// whole model (n = every parameter, as the TinySkills reference does it; <see cref="ModelScopeTrim"/>), signs are elected by the
/// summed trimmed vectors, the agreeing entries are averaged (disjoint mean) and the result is
/// base + λ · merged. Float32 arithmetic; stored in the base's dtypes.
/// </summary>
internal static class TiesBaseline
{
    /// <summary>The merged model as a host source, tensors sorted by name (the order the run's weight sets use).</summary>
    /// <param name="basePath">Base model folder or .safetensors file.</param>
    /// <param name="expertPaths">Expert models (same tensor names and shapes as the base).</param>
    /// <param name="density">Fraction of each task vector kept, in (0, 1].</param>
    /// <param name="lambda">Scale of the merged task vector.</param>
    public static InMemoryTensorSource Build(string basePath, IReadOnlyList<string> expertPaths, double density, double lambda)
    {
        using var baseModel = SafetensorsModel.Open(basePath);
        var experts = new List<SafetensorsModel>();
        try
        {
            foreach (var p in expertPaths) experts.Add(SafetensorsModel.Open(p));
            var tensors = baseModel.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
            long total = tensors.Sum(t => t.ElementCount);
            long keep = MagnitudeThreshold.KeepCount(density, total);

            // Whole-model trims: exactly k entries per expert (ties at the k-th magnitude broken by name, then element order).
            float[]? cachedBase = null;
            int cachedIndex = -1;
            var trim = ModelScopeTrim.Compute(tensors.Length, Enumerable.Repeat(keep, experts.Count).ToArray(),
                t =>
                {
                    if (t != cachedIndex) { cachedBase = Floats(baseModel, tensors[t]); cachedIndex = t; }
                    return cachedBase;
                },
                (i, t) => Floats(experts[i], tensors[t]));

            var weights = Enumerable.Repeat(1f, experts.Count).ToArray();
            var source = new InMemoryTensorSource();
            for (int ti = 0; ti < tensors.Length; ti++)
            {
                var t = tensors[ti];
                var b = Floats(baseModel, t);
                var ex = experts.Select(e => (ReadOnlyMemory<float>)Floats(e, t)).ToArray();
                var merged = new float[b.Length];
                var cuts = trim.PerTensor.Select(c => c[ti]).ToArray();
                TaskVectorMerges.TiesTrimmed(b, ex, weights, cuts, (float)lambda, normalize: true, rescale: false, merged);
                source.Add(t.Name, t.DType, t.Shape, merged);
            }
            return source;
        }
        finally
        {
            foreach (var e in experts) e.Dispose();
        }
    }

    // The experiment's models were checked against the base (names and shapes) when the run started.
    private static float[] Floats(SafetensorsModel model, TensorInfo t)
    {
        var info = model.Tensors.First(x => x.Name == t.Name);
        var dst = new float[info.ElementCount];
        DTypeConversion.ToSingle(model.GetBytes(t.Name), info.DType, dst);
        return dst;
    }
}
