namespace CycleQD.Core.Archives;

/// <summary>
/// The MAP-Elites grid of one task: quality = that task's score; the behaviour characteristics are
/// the other tasks' scores, in task order, each binned by its <see cref="BinSpec"/>. One elite per
/// cell; a newcomer takes the cell when it is empty or its quality is strictly higher.
/// The archive of a run without the cycle (<see cref="Mean"/>) differs in two ways only: its quality
/// is the mean of all tasks' scores and every task is a behaviour characteristic.
/// </summary>
public sealed class Archive
{
    /// <summary>The <see cref="Task"/> of the mean-quality archive, which has no single quality task.</summary>
    public const int MeanTask = -1;

    private readonly SortedDictionary<int, Elite> _cells = new();

    /// <summary>Index of the quality task, or <see cref="MeanTask"/> for the mean-quality archive.</summary>
    public int Task { get; }

    /// <summary>Whether the quality is the mean of all tasks' scores (a run without the cycle) rather than one task's score.</summary>
    public bool IsMean => Task == MeanTask;

    /// <summary>Tasks used as behaviour characteristics (all but <see cref="Task"/>; every task for the mean archive), in order.</summary>
    public IReadOnlyList<int> BcTasks { get; }

    /// <summary>Bins of each BC dimension, parallel to <see cref="BcTasks"/>.</summary>
    public IReadOnlyList<BinSpec> Bins { get; }

    /// <summary>Total number of cells: product of the bin counts (1 when there is a single task).</summary>
    public int CellCount { get; }

    /// <param name="task">Quality task index.</param>
    /// <param name="binsPerTask">One <see cref="BinSpec"/> per task (the entry for <paramref name="task"/> itself is ignored).</param>
    public Archive(int task, IReadOnlyList<BinSpec> binsPerTask)
    {
        ArgumentNullException.ThrowIfNull(binsPerTask);
        if (task != MeanTask && (task < 0 || task >= binsPerTask.Count))
            throw new ArgumentOutOfRangeException(nameof(task), task, $"the quality task must be one of the {binsPerTask.Count} tasks (0–{binsPerTask.Count - 1}) or {nameof(MeanTask)}");
        Task = task;
        var bc = new List<int>();
        for (int t = 0; t < binsPerTask.Count; t++) if (t != task) bc.Add(t);
        BcTasks = bc;
        Bins = bc.Select(t => binsPerTask[t]).ToArray();
        long cells = 1;
        foreach (var b in Bins) cells = checked(cells * b.Count);
        CellCount = checked((int)cells);
    }

    /// <summary>The single archive of a run without the cycle: quality = mean of all tasks' scores, every task a behaviour characteristic.</summary>
    /// <param name="binsPerTask">One <see cref="BinSpec"/> per task.</param>
    public static Archive Mean(IReadOnlyList<BinSpec> binsPerTask) => new(MeanTask, binsPerTask);

    /// <summary>
    /// The quality of a score vector in this archive: the quality task's score, or for the mean archive
    /// the mean of all scores (summed in task order; NaN when any is NaN).
    /// </summary>
    public double QualityOf(IReadOnlyList<double> scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        if (!IsMean) return scores[Task];
        double sum = 0;
        for (int t = 0; t < scores.Count; t++) sum += scores[t];
        return sum / scores.Count;
    }

    /// <summary>Occupied cells, by flat cell index (row-major over the BC dimensions), ascending.</summary>
    public IReadOnlyDictionary<int, Elite> Cells => _cells;

    /// <summary>Per-dimension bin indices of a score vector (length = number of tasks).</summary>
    public int[] CoordinatesOf(IReadOnlyList<double> scores)
    {
        var c = new int[BcTasks.Count];
        for (int d = 0; d < c.Length; d++) c[d] = Bins[d].BinOf(scores[BcTasks[d]]);
        return c;
    }

    /// <summary>Flat (row-major) index of per-dimension coordinates.</summary>
    public int FlatIndex(IReadOnlyList<int> coordinates)
    {
        int idx = 0;
        for (int d = 0; d < coordinates.Count; d++) idx = idx * Bins[d].Count + coordinates[d];
        return idx;
    }

    /// <summary>Per-dimension coordinates of a flat index.</summary>
    public int[] Unflatten(int flat)
    {
        var c = new int[Bins.Count];
        for (int d = c.Length - 1; d >= 0; d--) { c[d] = flat % Bins[d].Count; flat /= Bins[d].Count; }
        return c;
    }

    /// <summary>Flat cell a score vector falls in.</summary>
    public int CellOf(IReadOnlyList<double> scores) => FlatIndex(CoordinatesOf(scores));

    /// <summary>Whether a model with <paramref name="scores"/> would take its cell: the cell is empty or its quality is strictly higher.</summary>
    public bool WouldAccept(IReadOnlyList<double> scores)
    {
        double q = QualityOf(scores);
        if (double.IsNaN(q)) return false;
        return !_cells.TryGetValue(CellOf(scores), out var cur) || q > QualityOf(cur.Scores);
    }

    /// <summary>Puts <paramref name="elite"/> in its cell if <see cref="WouldAccept"/>; returns whether it did.</summary>
    internal bool TryInsert(Elite elite)
    {
        if (!WouldAccept(elite.Scores)) return false;
        _cells[CellOf(elite.Scores)] = elite;
        return true;
    }

    /// <summary>Restores a cell from a checkpoint without comparison.</summary>
    internal void Restore(int cell, Elite elite)
    {
        if (cell < 0 || cell >= CellCount) throw new ConfigurationException($"archive of {(IsMean ? "the mean quality" : $"task {Task}")}: checkpoint cell {cell} is outside 0..{CellCount - 1}");
        _cells[cell] = elite;
    }

    /// <summary>Sum of the elites' qualities.</summary>
    public double QdScore => _cells.Values.Sum(e => QualityOf(e.Scores));

    /// <summary>Fraction of cells occupied.</summary>
    public double Coverage => (double)_cells.Count / CellCount;

    /// <summary>Highest quality in the archive, or NaN when empty.</summary>
    public double BestQuality => _cells.Count == 0 ? double.NaN : _cells.Values.Max(e => QualityOf(e.Scores));
}
