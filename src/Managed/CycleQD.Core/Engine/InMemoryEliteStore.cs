using System.Security.Cryptography;
using CycleQD.Core.Compute;

namespace CycleQD.Core.Engine;

/// <summary>
/// An <see cref="IEliteStore"/> that keeps every elite's bytes in host memory, keyed by the SHA-256
/// of its tensor bytes (16 hex digits). For hosts whose models are small enough to hold all
/// elites in memory, and for tests; a run directory uses a folder of safetensors files instead.
/// Not thread-safe, like the engine that calls it. Not disposable: it holds managed arrays only,
/// released when the engine drops elites (<see cref="RemoveAllExcept"/>) or the store is collected;
/// every weight set <see cref="Open"/> returns is the caller's to dispose.
/// </summary>
public sealed class InMemoryEliteStore : IEliteStore
{
    private readonly Dictionary<string, InMemoryTensorSource> _elites = new(StringComparer.Ordinal);

    /// <summary>Ids of the elites held now.</summary>
    public IReadOnlyCollection<string> Ids => _elites.Keys;

    /// <inheritdoc/>
    public string Add(IComputeBackend backend, IWeightSet weights)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(weights);
        var source = new InMemoryTensorSource();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (int i = 0; i < weights.Tensors.Count; i++)
        {
            var bytes = new byte[weights.Tensors[i].ByteLength];
            backend.Download(weights, i, bytes);
            hash.AppendData(bytes);
            source.Add(weights.Tensors[i], bytes);
        }
        string id = Convert.ToHexStringLower(hash.GetHashAndReset())[..16];
        _elites.TryAdd(id, source);
        return id;
    }

    /// <inheritdoc/>
    public IWeightSet Open(IComputeBackend backend, string id)
    {
        ArgumentNullException.ThrowIfNull(backend);
        return _elites.TryGetValue(id, out var source)
            ? backend.Upload(source)
            : throw new KeyNotFoundException($"elite '{id}' is not in the in-memory store");
    }

    /// <inheritdoc/>
    public void RemoveAllExcept(IReadOnlySet<string> live)
    {
        ArgumentNullException.ThrowIfNull(live);
        foreach (var id in _elites.Keys.Where(k => !live.Contains(k)).ToList()) _elites.Remove(id);
    }
}
