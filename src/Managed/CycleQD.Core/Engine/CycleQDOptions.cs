using System.Globalization;
using CycleQD.Core.Archives;
using CycleQD.Core.Compute;
using CycleQD.Core.Sampling;

namespace CycleQD.Core.Engine;

/// <summary>Explicit bounds of one task's BC axis (score units).</summary>
public sealed record ScoreBounds(double Lower, double Upper);

/// <summary>Crossover settings: wᵢ ~ N(Mean, Std²), child = base + Σ wᵢ τᵢ / Σ wᵢ.</summary>
/// <param name="Mean">μ (paper 1.0).</param>
/// <param name="Std">σ ≥ 0 (paper 0.03; the reference code uses 0.01).</param>
public sealed record CrossoverOptions(double Mean = 1.0, double Std = 0.03)
{
    /// <summary>Throws <see cref="ConfigurationException"/> on unusable values.</summary>
    public void Validate()
    {
        if (!double.IsFinite(Mean) || Mean == 0) throw new ConfigurationException($"crossover.mean = {Mean}, must be finite and nonzero");
        if (!(Std >= 0) || !double.IsFinite(Std)) throw new ConfigurationException($"crossover.std = {Std}, must be ≥ 0");
        // A Philox normal draw stays within ±7, so this bound keeps both weights and their sum finite in float32.
        if (Math.Abs(Mean) + 8 * Std > float.MaxValue / 2)
            throw new ConfigurationException(string.Create(CultureInfo.InvariantCulture,
                $"crossover: mean {Mean:G4} and std {Std:G4} are too large: the weights would overflow float32 (|mean| + 8·std must stay below {float.MaxValue / 2:G4})"));
    }
}

/// <summary>Everything that defines a CycleQD run's algorithm (not its data or I/O).</summary>
public sealed record CycleQDOptions
{
    /// <summary>Task names; one archive per task, in this order.</summary>
    public required IReadOnlyList<string> Tasks { get; init; }

    /// <summary>
    /// True (the default, CycleQD): one archive per task, the quality task cycling over them. False:
    /// the paper's "without the cycle" ablation: one archive whose quality is the mean of all tasks'
    /// scores and whose behaviour characteristics are all the tasks' scores (G to the power N cells).
    /// </summary>
    public bool Cycle { get; init; } = true;

    /// <summary>
    /// What the archive of quality index <paramref name="task"/> is called: <paramref name="names"/>[task]
    /// (the task's name, or any per-task label), or "mean" for <see cref="Archive.MeanTask"/>.
    /// </summary>
    public static string QualityName(int task, IReadOnlyList<string> names) => task == Archive.MeanTask ? MeanQualityName : names[task];

    /// <summary>The archives' names in <see cref="NewArchives"/> order: the task names, or just "mean" without the cycle.</summary>
    public IReadOnlyList<string> ArchiveNames => Cycle ? Tasks : [MeanQualityName];

    /// <summary>The name of the mean-quality archive of a run without the cycle.</summary>
    public const string MeanQualityName = "mean";

    /// <summary>Most cells one archive may have (G to the power N − 1): the elite-map plots hold a dense G × G grid.</summary>
    public const int MaxCellsPerArchive = 1_000_000;

    /// <summary>Bins per BC dimension, G ≥ 1 (paper 15).</summary>
    public int Bins { get; init; } = 15;

    /// <summary>Explicit BC bounds per task name; a task missing here gets the paper's rule from the experts' scores.</summary>
    public IReadOnlyDictionary<string, ScoreBounds> Bounds { get; init; } = new Dictionary<string, ScoreBounds>();

    /// <summary>Generations spent on one quality task before moving to the next: k = (g / interval) mod N.</summary>
    public int QualityTaskInterval { get; init; } = 1;

    /// <summary>Parent sampling.</summary>
    public SamplingOptions Sampling { get; init; } = new();

    /// <summary>Crossover.</summary>
    public CrossoverOptions Crossover { get; init; } = new();

    /// <summary>Mutation.</summary>
    public MutationOptions Mutation { get; init; } = new();

    /// <summary>
    /// Pipeline depth D ≥ 1: the parents of generation g are drawn from the archives as they stood
    /// after generation g − D was applied, so up to D children can be evaluated at once while the
    /// run stays a pure function of (seed, D). D = 1 is the plain sequential algorithm.
    /// </summary>
    public int InFlight { get; init; } = 1;

    /// <summary>Run seed: the Philox key.</summary>
    public ulong Seed { get; init; }

    /// <summary>Throws <see cref="ConfigurationException"/> naming the first unusable setting.</summary>
    public void Validate()
    {
        if (Tasks.Count == 0) throw new ConfigurationException("tasks: at least one task is required");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in Tasks)
        {
            if (string.IsNullOrWhiteSpace(t)) throw new ConfigurationException("tasks: empty task name");
            if (!seen.Add(t)) throw new ConfigurationException($"tasks: '{t}' is listed twice");
        }
        if (Bins < 1) throw new ConfigurationException($"archive.bins = {Bins}, must be at least 1");
        int axes = Cycle ? Tasks.Count - 1 : Tasks.Count;
        double cells = Math.Pow(Bins, axes);
        if (cells > MaxCellsPerArchive)
            throw new ConfigurationException(string.Create(CultureInfo.InvariantCulture,
                $"archive.bins: {Bins} bins on each of {axes} behaviour axes ({Tasks.Count} tasks{(Cycle ? "" : ", without the cycle")}) make {cells:G4} cells per archive, too many: at most {MaxCellsPerArchive:N0} are supported (the paper uses 15)"));
        if (Tasks.Contains(MeanQualityName) && !Cycle)
            throw new ConfigurationException($"tasks: a task named '{MeanQualityName}' clashes with the mean-quality archive of archive.cycle: false");
        foreach (var (task, b) in Bounds)
        {
            if (!seen.Contains(task)) throw new ConfigurationException($"archive.bounds: unknown task '{task}' (tasks: {string.Join(", ", Tasks)})");
            new BinSpec(b.Lower, b.Upper, Bins).Validate($"archive.bounds.{task}");
        }
        if (QualityTaskInterval < 1) throw new ConfigurationException($"quality_task_interval = {QualityTaskInterval}, must be at least 1");
        if (InFlight < 1) throw new ConfigurationException($"in_flight = {InFlight}, must be at least 1");
        Sampling.Validate();
        Crossover.Validate();
        Mutation.Validate();
        if (!Cycle && Mutation.Kind == MutationKind.Svd && Mutation.Basis == MutationBasis.Expert)
            throw new ConfigurationException("mutation.basis: expert adds the quality task's expert direction, and a run without the cycle (archive.cycle: false) has no quality task: use basis child");
    }

    /// <summary>Quality task of generation <paramref name="generation"/>: (g / interval) mod N, or <see cref="Archive.MeanTask"/> without the cycle.</summary>
    public int QualityTaskOf(int generation) => Cycle ? generation / QualityTaskInterval % Tasks.Count : Archive.MeanTask;

    /// <summary>The archives this run keeps: one per task in task order, or the one mean-quality archive without the cycle.</summary>
    public Archive[] NewArchives(IReadOnlyList<BinSpec> binsPerTask) =>
        Cycle ? Enumerable.Range(0, Tasks.Count).Select(t => new Archive(t, binsPerTask)).ToArray() : [Archive.Mean(binsPerTask)];
}
