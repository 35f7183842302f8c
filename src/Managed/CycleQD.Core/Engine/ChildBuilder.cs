using CycleQD.Core.Archives;
using CycleQD.Core.Compute;

namespace CycleQD.Core.Engine;

/// <summary>
/// Builds a child from its recipe: crossover of the plan's parents over the base, then the
/// configured mutation, keyed by (seed, generation, tensor). The engine breeds with it; a process
/// that only has the recipe (a worker that evaluates children for another process) rebuilds the
/// same child with it: the same recipe, options, base, experts and elites on the same kind of
/// backend give the same bits.
/// </summary>
/// <remarks>Not thread-safe: one caller at a time. Base, experts, store and backend stay owned by the caller.</remarks>
public sealed class ChildBuilder
{
    private readonly CycleQDOptions _options;
    private readonly IComputeBackend _backend;
    private readonly IWeightSet _base;
    private readonly Dictionary<string, Expert> _experts = new(StringComparer.Ordinal);
    private readonly IEliteStore _store;
    private readonly IReadOnlyDictionary<string, ExpertSvdBasis>? _expertBases;

    /// <param name="options">Algorithm settings (validated by the caller; <see cref="CycleQDOptions.Validate"/>).</param>
    /// <param name="backend">Compute backend that owns all weight sets below.</param>
    /// <param name="baseModel">Base model.</param>
    /// <param name="experts">Seed experts, unique names, every tensor shaped as the base's.</param>
    /// <param name="store">Where parent elites that are not experts are read from.</param>
    /// <param name="expertBases">With mutation basis expert: the SVD of each task's expert's task vector, by task name (every task needs one).</param>
    /// <exception cref="ConfigurationException">no expert, a repeated name, an expert that does not fit the base, or a missing expert SVD.</exception>
    public ChildBuilder(CycleQDOptions options, IComputeBackend backend, IWeightSet baseModel, IReadOnlyList<Expert> experts,
        IEliteStore store, IReadOnlyDictionary<string, ExpertSvdBasis>? expertBases = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(baseModel);
        ArgumentNullException.ThrowIfNull(experts);
        ArgumentNullException.ThrowIfNull(store);
        if (experts.Count == 0) throw new ConfigurationException("experts: at least one expert is required");
        _options = options;
        _backend = backend;
        _base = baseModel;
        _store = store;
        foreach (var e in experts)
        {
            if (!_experts.TryAdd(e.Name, e)) throw new ConfigurationException($"experts: '{e.Name}' is listed twice");
            CheckCompatible(e);
        }
        if (options.Mutation is { Kind: MutationKind.Svd, Basis: MutationBasis.Expert })
        {
            foreach (string task in options.Tasks)
            {
                if (expertBases is null || !expertBases.TryGetValue(task, out var basis))
                    throw new ConfigurationException($"mutation.basis expert: no SVD of the expert of task '{task}' was given");
                try { basis.CheckLayout(baseModel.Tensors); }
                catch (ArgumentException e) { throw new ConfigurationException($"mutation.basis expert: {e.Message}"); }
            }
            _expertBases = expertBases;
        }
    }

    private void CheckCompatible(Expert e)
    {
        var b = _base.Tensors;
        var t = e.Weights.Tensors;
        if (t.Count != b.Count)
            throw new ConfigurationException($"expert '{e.Name}': {t.Count} tensors, the base model has {b.Count}");
        for (int i = 0; i < b.Count; i++)
        {
            if (t[i].Name != b[i].Name)
                throw new ConfigurationException($"expert '{e.Name}': tensor {i} is '{t[i].Name}', the base model's is '{b[i].Name}'");
            if (!t[i].Shape.AsSpan().SequenceEqual(b[i].Shape))
                throw new ConfigurationException($"expert '{e.Name}': tensor '{t[i].Name}' has shape {t[i].ShapeText}, the base model's is {b[i].ShapeText}");
        }
    }

    /// <summary>
    /// The child of <paramref name="plan"/>: crossover, then mutation. <paramref name="reuse"/> (a spare
    /// weight set of the base's layout on this backend, or null) is written over and returned; on an
    /// error it is disposed. A child that overflows to NaN or ∞ while it is mutated is returned with
    /// the reason (a possible outcome of the search, not a failure).
    /// </summary>
    /// <exception cref="ConfigurationException">a parent id that is neither an expert nor in the store.</exception>
    public (IWeightSet Child, string? NonFinite) Build(BreedingPlan plan, IWeightSet? reuse = null)
    {
        ArgumentNullException.ThrowIfNull(plan);
        var opened = new List<IWeightSet>();
        IWeightSet child;
        try
        {
            var parents = plan.Parents.Select(id => Resolve(id, opened)).ToArray();
            if (reuse != null)
            {
                _backend.MergeInto(reuse, _base, parents, plan.Weights.ToArray());
                child = reuse;
            }
            else
            {
                child = _backend.Merge(_base, parents, plan.Weights.ToArray());
            }
        }
        catch
        {
            reuse?.Dispose();
            throw;
        }
        finally
        {
            foreach (var o in opened) o.Dispose();
        }
        var m = _options.Mutation;
        try
        {
            if (m.Kind == MutationKind.Svd && m.Basis == MutationBasis.Expert)
                _backend.MutateSvdExpertBasis(child, _base, _expertBases![_options.Tasks[plan.QualityTask]], m, _options.Seed, (uint)plan.Generation);
            else if (m.Kind == MutationKind.Svd) _backend.MutateSvd(child, _base, m, _options.Seed, (uint)plan.Generation);
            else if (m.Kind == MutationKind.Gaussian) _backend.MutateGaussian(child, m, _options.Seed, (uint)plan.Generation);
        }
        catch (NonFiniteWeightsException e)
        {
            return (child, e.Message);
        }
        catch
        {
            child.Dispose();
            throw;
        }
        return (child, null);
    }

    private IWeightSet Resolve(string id, List<IWeightSet> opened)
    {
        if (EliteIds.TryGetExpertTask(id, out string task))
            return _experts.TryGetValue(task, out var e) ? e.Weights
                : throw new ConfigurationException($"elite '{id}': no such expert in the experiment");
        var w = _store.Open(_backend, id);
        opened.Add(w);
        return w;
    }
}
