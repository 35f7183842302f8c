using CycleQD.Core.Compute;
using CycleQD.Onnx.Graph;
using CycleQD.Tensors;

namespace CycleQD.Runs.Families;

/// <summary>
/// Whether an evaluator's session can read a candidate where the compute backend keeps it (its
/// <see cref="IWeightMemory"/>), and the addresses to bind when it can; shared by the Llama and SAM evaluators.
/// </summary>
internal static class InPlaceCandidate
{
    /// <summary>
    /// The graph weights' addresses and byte lengths when <paramref name="candidate"/> lies where the session
    /// runs (host memory, or GPU <paramref name="cudaDevice"/> when <paramref name="cuda"/>) and stores every
    /// graph weight as <paramref name="storage"/>; otherwise null.
    /// </summary>
    public static Dictionary<string, (nint Pointer, long Bytes)>? Tensors(IWeightSet candidate, IReadOnlyList<LlamaWeightSpec> graph, DType storage, bool cuda, int cudaDevice)
    {
        if (!Located(candidate, cuda, cudaDevice)) return null;
        var memory = (IWeightMemory)candidate;
        var names = graph.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        var tensors = new Dictionary<string, (nint, long)>(StringComparer.Ordinal);
        var specs = candidate.Tensors;
        for (int i = 0; i < specs.Count; i++)
        {
            if (!names.Contains(specs[i].Name)) continue;
            if (specs[i].DType != storage) return null;
            tensors[specs[i].Name] = (memory.TensorAddress(i), specs[i].ByteLength);
        }
        return tensors.Count == names.Count ? tensors : null;
    }

    /// <summary>
    /// For a CUDA session, a device copy of a candidate the backend keeps in host memory (a streamed run's
    /// experts and stored elites): a merge with itself as the only parent, which is that set exactly; else null.
    /// </summary>
    public static IWeightSet? DeviceCopy(IComputeBackend backend, IWeightSet candidate, bool cuda) =>
        cuda && candidate is IWeightMemory { Kind: WeightMemoryKind.Host } ? backend.Merge(candidate, [candidate], [1f]) : null;

    /// <summary>Why <see cref="Tensors"/> gave null, in words for an error.</summary>
    public static string WhyNot(IWeightSet candidate, IReadOnlyList<LlamaWeightSpec> graph, DType storage, bool cuda, int cudaDevice, string evaluator)
    {
        if (!Located(candidate, cuda, cudaDevice))
            return $"the {evaluator} binds each candidate where it lies, and this one is not {(cuda ? $"on GPU {cudaDevice}" : "in host memory")} " +
                   "(use the same device for the compute backend and the evaluator)";
        var odd = candidate.Tensors.FirstOrDefault(t => graph.Any(s => s.Name == t.Name) && t.DType != storage);
        return odd is not null
            ? $"the {evaluator} binds each candidate in place, and tensor '{odd.Name}' is stored as {DTypes.Name(odd.DType)}: store every weight of the base and experts as {DTypes.Name(storage)}"
            : $"the candidate lacks a weight the {evaluator}'s graph reads ({string.Join(", ", graph.Select(s => s.Name).Except(candidate.Tensors.Select(t => t.Name)).Take(3))})";
    }

    private static bool Located(IWeightSet candidate, bool cuda, int cudaDevice) =>
        candidate is IWeightMemory m && m.Kind == (cuda ? WeightMemoryKind.Cuda : WeightMemoryKind.Host) && (!cuda || m.DeviceOrdinal == cudaDevice);
}
