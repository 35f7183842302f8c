using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Runtime;

/// <summary>
/// Per-sequence attention cache: the present key/value tensors of every layer from the last step,
/// fed back as the next step's past: keys [batch, kv_heads, head_dim, length] (transposed),
/// values [batch, kv_heads, length, head_dim], in the graph's element type, in the memory of the
/// session's device (host for CPU, GPU for CUDA). Owns its tensors.
/// </summary>
public sealed class KvCache : IDisposable
{
    internal OrtValue[] Keys { get; }
    internal OrtValue[] Values { get; }

    /// <summary>Batch size.</summary>
    public int Batch { get; }

    /// <summary>Cached positions per sequence (including padding).</summary>
    public int Length { get; }

    internal KvCache(OrtValue[] keys, OrtValue[] values, int batch, int length)
    {
        Keys = keys;
        Values = values;
        Batch = batch;
        Length = length;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var k in Keys) k.Dispose();
        foreach (var v in Values) v.Dispose();
    }
}

/// <summary>Logits of one forward step and the cache that follows it.</summary>
/// <param name="Logits">float32 [batch, positions, vocab], row-major (positions is 1 for a last-position-only session); empty when only the greedy tokens were fetched.</param>
/// <param name="Positions">Positions per sequence in <paramref name="Logits"/>.</param>
/// <param name="Cache">The cache to pass to the next step (caller owns it).</param>
/// <param name="NextTokens">The greedy next token of each sequence when the step fetched only those (<see cref="Graph.LlamaGraphBuilder.NextTokens"/>), else null.</param>
public sealed record LlamaStepResult(float[] Logits, int Positions, KvCache Cache, long[]? NextTokens = null);
