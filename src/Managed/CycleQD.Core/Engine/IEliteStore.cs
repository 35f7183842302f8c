using CycleQD.Core.Compute;

namespace CycleQD.Core.Engine;

/// <summary>
/// Where elites' weights live between uses (a folder of safetensors files in a run directory, or
/// memory in tests). Ids are content hashes, so storing the same weights twice stores them once.
/// </summary>
public interface IEliteStore
{
    /// <summary>Stores <paramref name="weights"/> (read through <paramref name="backend"/>) and returns its content id. Idempotent.</summary>
    string Add(IComputeBackend backend, IWeightSet weights);

    /// <summary>Loads elite <paramref name="id"/> into <paramref name="backend"/>; the caller owns the result.</summary>
    IWeightSet Open(IComputeBackend backend, string id);

    /// <summary>Deletes every stored elite whose id is not in <paramref name="live"/>.</summary>
    void RemoveAllExcept(IReadOnlySet<string> live);
}
