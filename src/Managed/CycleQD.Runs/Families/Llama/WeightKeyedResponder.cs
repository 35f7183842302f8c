using System.Runtime.InteropServices;
using System.Text;
using CycleQD.Core.Evaluation;

namespace CycleQD.Runs.Families.Llama;

/// <summary>
/// A stand-in for the model that tests the whole run loop on real benchmark harnesses: it answers a
/// prompt with the benchmark's gold answer or with nothing, and which prompts get the gold answer is
/// a deterministic function of the candidate's weights. So candidates score differently, children
/// enter archives and the final stage compares real benchmark scores, while a run stays exactly
/// reproducible. It measures the harness and the loop, never a model: selected by
/// <c>evaluation.responder: scripted:weight-keyed-gold</c>, and every report of such a run says so.
/// </summary>
/// <remarks>
/// The candidate is summarised by a 64-bit digest of a strided sample of its float32 weights (every
/// 613th value of every tensor); a fraction f ∈ [0.2, 0.9) follows from the digest, and a prompt is
/// answered with gold when the hash of (digest, prompt) falls below f. Multi-turn samples pass only
/// when every turn draws gold.
/// </remarks>
/// <param name="gold">The benchmark's gold responders, tried in order (the first that knows the prompt answers).</param>
/// <param name="weights">The candidate's host arrays, read at every call.</param>
public sealed class WeightKeyedResponder(IReadOnlyList<ITextGenerator> gold, IReadOnlyDictionary<string, float[]> weights) : ITextGenerator
{
    /// <summary>The name experiments select it by.</summary>
    public const string Name = "scripted:weight-keyed-gold";

    private const int Stride = 613;

    /// <summary>The digest of the current candidate.</summary>
    public ulong Digest()
    {
        ulong h = 14695981039346656037;
        foreach (var name in weights.Keys.Order(StringComparer.Ordinal))
        {
            var bits = MemoryMarshal.Cast<float, uint>(weights[name].AsSpan());
            for (int i = 0; i < bits.Length; i += Stride) { h ^= bits[i]; h *= 1099511628211; }
        }
        return h;
    }

    /// <inheritdoc/>
    public async Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, CancellationToken cancellationToken = default)
    {
        ulong digest = Digest();
        double fraction = 0.2 + 0.7 * (Mix(digest) >> 11) * (1.0 / (1UL << 53));
        var results = new GenerationResult[requests.Count];
        for (int i = 0; i < requests.Count; i++)
        {
            ulong h = digest;
            foreach (byte b in Encoding.UTF8.GetBytes(requests[i].Prompt)) { h ^= b; h *= 1099511628211; }
            bool answer = (Mix(h) >> 11) * (1.0 / (1UL << 53)) < fraction;
            results[i] = answer ? await GoldAsync(requests[i], cancellationToken).ConfigureAwait(false) : new GenerationResult("", [], GenerationFinish.Eos);
        }
        return results;
    }

    private async Task<GenerationResult> GoldAsync(GenerationRequest request, CancellationToken ct)
    {
        Exception? last = null;
        foreach (var g in gold)
        {
            try
            {
                return (await g.GenerateAsync([request], ct).ConfigureAwait(false))[0];
            }
            catch (InvalidOperationException e)
            {
                last = e; // not this benchmark's prompt
            }
        }
        throw new InvalidOperationException("no gold responder knows this prompt", last);
    }

    private static ulong Mix(ulong x)
    {
        x ^= x >> 30; x *= 0xbf58476d1ce4e5b9UL;
        x ^= x >> 27; x *= 0x94d049bb133111ebUL;
        return x ^ (x >> 31);
    }
}
