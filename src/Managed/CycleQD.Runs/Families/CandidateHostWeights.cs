using System.Runtime.InteropServices;
using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using CycleQD.Onnx.Graph;
using CycleQD.Tensors;

namespace CycleQD.Runs.Families;

/// <summary>
/// The float32 host arrays an ONNX graph's weight inputs are bound to (pinned, not copied), one per
/// graph weight, allocated once; <see cref="Load"/> overwrites them with a candidate's tensors
/// downloaded from the compute backend, so the next run of the graph sees the candidate.
/// Not thread-safe: the evaluators serialise their evaluations.
/// </summary>
internal sealed class CandidateHostWeights
{
    private readonly string _graph;
    private byte[] _scratch = [];

    /// <summary>The arrays, keyed by tensor name (hand these to the weights binding).</summary>
    public Dictionary<string, float[]> Arrays { get; } = new(StringComparer.Ordinal);

    /// <param name="graphWeights">The tensors the graph reads (names and shapes).</param>
    /// <param name="graph">What reads them, for messages (e.g. "the model's graph").</param>
    public CandidateHostWeights(IEnumerable<LlamaWeightSpec> graphWeights, string graph)
    {
        _graph = graph;
        foreach (var spec in graphWeights)
            Arrays[spec.Name] = new float[spec.Shape.Aggregate(1L, (a, b) => checked(a * b))];
    }

    /// <summary>Copies every graph weight of <paramref name="candidate"/> into the arrays (other candidate tensors are skipped).</summary>
    /// <exception cref="InvalidOperationException">a tensor's size differs from the graph's, or the candidate lacks one the graph needs.</exception>
    public void Load(IComputeBackend backend, IWeightSet candidate)
    {
        var specs = candidate.Tensors;
        int found = 0;
        for (int i = 0; i < specs.Count; i++)
        {
            var s = specs[i];
            // Tensors no graph input reads (rotary inv_freq, SAM's mask-prompt embedding) are skipped.
            if (!Arrays.TryGetValue(s.Name, out var dst)) continue;
            if (s.ElementCount != dst.Length)
                throw new InvalidOperationException($"candidate tensor {s.Name} has shape {s.ShapeText}, {_graph} needs {dst.Length} elements");
            if (s.DType == DType.F32)
            {
                backend.Download(candidate, i, MemoryMarshal.AsBytes(dst.AsSpan()));
            }
            else
            {
                if (_scratch.Length < s.ByteLength) _scratch = new byte[s.ByteLength];
                var bytes = _scratch.AsSpan(0, checked((int)s.ByteLength));
                backend.Download(candidate, i, bytes);
                DTypeConversion.ToSingle(bytes, s.DType, dst);
            }
            found++;
        }
        if (found != Arrays.Count)
        {
            var names = specs.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
            throw new InvalidOperationException($"candidate lacks tensor {Arrays.Keys.First(k => !names.Contains(k))} that {_graph} needs");
        }
    }
}
