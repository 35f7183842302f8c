using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using CycleQD.Core;
using CycleQD.Core.Compute;
using CycleQD.Cpu.Linalg;
using CycleQD.Tensors;

namespace CycleQD.Runs;

/// <summary>
/// The expert-basis SVD mutation's factors, one file per task: RUN/state/expert-svd/&lt;task&gt;.safetensors
/// ('/' in a task name becomes '_'), float32 tensors "&lt;tensor&gt;.U" (m×k), "&lt;tensor&gt;.S" (k) and
/// "&lt;tensor&gt;.Vt" (k×n). Its metadata records the SHA-256 of the expert's and the base's weights
/// (tensor names, dtypes, shapes and bytes, as the backend holds them), svd_rank and include_embeddings;
/// a file whose record differs from the run's models and settings is recomputed and replaced, so a
/// resume reuses the SVD and a changed expert invalidates it.
/// </summary>
public static class ExpertSvdCache
{
    /// <summary>The format number written to and required from the metadata.</summary>
    public const string Format = "1";

    /// <summary>The cache file of <paramref name="task"/> in run folder <paramref name="runPath"/>.</summary>
    public static string PathOf(string runPath, string task) =>
        Path.Combine(runPath, "state", "expert-svd", task.Replace('/', '_').Replace('\\', '_') + ".safetensors");

    /// <summary>
    /// The basis of every expert (keyed by task), read from the cache when it matches, else computed and written.
    /// </summary>
    /// <param name="runPath">The run folder.</param>
    /// <param name="backend">Owns <paramref name="baseModel"/> and the experts.</param>
    /// <param name="baseModel">The base's weights.</param>
    /// <param name="experts">Expert weights by task.</param>
    /// <param name="options">The run's mutation settings.</param>
    /// <param name="progress">One line per expert (reused or computed).</param>
    public static IReadOnlyDictionary<string, ExpertSvdBasis> LoadOrCompute(string runPath, IComputeBackend backend, IWeightSet baseModel,
        IReadOnlyList<KeyValuePair<string, IWeightSet>> experts, MutationOptions options, Action<string>? progress = null)
    {
        string baseHash = ContentHash(backend, baseModel);
        var result = new Dictionary<string, ExpertSvdBasis>(StringComparer.Ordinal);
        foreach (var (task, expert) in experts)
        {
            string path = PathOf(runPath, task);
            string expertHash = ContentHash(backend, expert);
            var metadata = Metadata(task, expertHash, baseHash, options);
            var cached = TryRead(path, task, baseModel.Tensors, options, metadata);
            if (cached != null)
            {
                progress?.Invoke($"expert SVD {task}: reusing {path}");
                result[task] = cached;
                continue;
            }
            progress?.Invoke($"expert SVD {task}: computing (once per run)");
            var basis = ExpertSvdFactorization.Compute(task, backend, expert, baseModel, options);
            Write(path, basis, metadata);
            result[task] = basis;
        }
        return result;
    }

    private static Dictionary<string, string> Metadata(string task, string expertHash, string baseHash, MutationOptions o) => new(StringComparer.Ordinal)
    {
        ["format"] = Format,
        ["task"] = task,
        ["expert_sha256"] = expertHash,
        ["base_sha256"] = baseHash,
        ["svd_rank"] = o.SvdRank.ToString(CultureInfo.InvariantCulture),
        ["include_embeddings"] = o.IncludeEmbeddings ? "true" : "false",
        ["rule"] = "2-D tensors whose name does not contain 'norm'",
    };

    /// <summary>The cached basis when the file exists, its metadata equals <paramref name="expected"/> and it has every factor the mutation needs; else null.</summary>
    internal static ExpertSvdBasis? TryRead(string path, string task, IReadOnlyList<TensorSpec> tensors, MutationOptions options,
        IReadOnlyDictionary<string, string> expected)
    {
        if (!File.Exists(path)) return null;
        try
        {
            using var file = SafetensorsFile.Open(path);
            foreach (var (k, v) in expected)
                if (!file.Metadata.TryGetValue(k, out var had) || had != v) return null;
            var factors = new SvdFactors?[tensors.Count];
            for (int i = 0; i < tensors.Count; i++)
            {
                var spec = tensors[i];
                if (!options.Applies(spec)) continue;
                string u = spec.Name + ".U", s = spec.Name + ".S", vt = spec.Name + ".Vt";
                if (!file.Contains(u) || !file.Contains(s) || !file.Contains(vt)) return null;
                var sv = file.GetSpan<float>(s).ToArray();
                factors[i] = new SvdFactors(checked((int)spec.Shape[0]), checked((int)spec.Shape[1]), sv.Length,
                    file.GetSpan<float>(u).ToArray(), sv, file.GetSpan<float>(vt).ToArray());
            }
            return new ExpertSvdBasis(task, tensors, factors);
        }
        catch (Exception e) when (e is TensorFormatException or ArgumentException or IOException or InvalidOperationException)
        {
            // A damaged or foreign file is recomputed, like a stale one.
            return null;
        }
    }

    private static void Write(string path, ExpertSvdBasis basis, IReadOnlyDictionary<string, string> metadata)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var data = new List<TensorData>();
        for (int i = 0; i < basis.Tensors.Count; i++)
        {
            if (basis[i] is not { } f) continue;
            string name = basis.Tensors[i].Name;
            data.Add(TensorData.FromSingle(name + ".U", DType.F32, [f.Rows, f.Rank], f.U));
            data.Add(TensorData.FromSingle(name + ".S", DType.F32, [f.Rank], f.S));
            data.Add(TensorData.FromSingle(name + ".Vt", DType.F32, [f.Rank, f.Cols], f.Vt));
        }
        SafetensorsWriter.WriteFile(path, data, metadata);
    }

    /// <summary>SHA-256 (hex) over every tensor's name, dtype, shape and stored bytes, read back from <paramref name="backend"/>.</summary>
    public static string ContentHash(IComputeBackend backend, IWeightSet set)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (int i = 0; i < set.Tensors.Count; i++)
        {
            var spec = set.Tensors[i];
            sha.AppendData(Encoding.UTF8.GetBytes($"{spec.Name}\n{DTypes.Name(spec.DType)}\n{spec.ShapeText}\n"));
            var bytes = new byte[spec.ByteLength];
            backend.Download(set, i, bytes);
            sha.AppendData(bytes);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }
}
