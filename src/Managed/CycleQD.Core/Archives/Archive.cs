namespace CycleQD.Core.Archives;

/// <summary>
/// The MAP-Elites grid of one task: quality = that task's score; the behaviour characteristics are
/// the other tasks' scores, in task order, each binned by its <see cref="BinSpec"/>. One elite per
/// cell; a newcomer takes the cell when it is empty or its quality is strictly higher.
/// </summary>
public sealed class Archive
{
    private readonly SortedDictionary<int, Elite> _cells = new();

    /// <summary>Index of the quality task.</summary>
    public int Task { get; }

    /// <summary>Tasks used as behaviour characteristics (all but <see cref="Task"/>), in order.</summary>
    public IReadOnlyList<int> BcTasks { get; }

    /// <summary>Bins of each BC dimension, parallel to <see cref="BcTasks"/>.</summary>
    public IReadOnlyList<BinSpec> Bins { get; }

    /// <summary>Total number of cells: product of the bin counts (1 when there is a single task).</summary>
    public int CellCount { get; }

    /// <param name="task">Quality task index.</param>
    /// <param name="binsPerTask">One <see cref="BinSpec"/> per task (the entry for <paramref name="task"/> itself is ignored).</param>
    public Archive(int task, IReadOnlyList<BinSpec> binsPerTask)
    {
        Task = task;
        var bc = new List<int>();
        for (int t = 0; t < binsPerTask.Count; t++) if (t != task) bc.Add(t);
        BcTasks = bc;
        Bins = bc.Select(t => binsPerTask[t]).ToArray();
        long cells = 1;
        foreach (var b in Bins) cells = checked(cells * b.Count);
        CellCount = checked((int)cells);
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
        if (double.IsNaN(scores[Task])) return false;
        return !_cells.TryGetValue(CellOf(scores), out var cur) || scores[Task] > cur.Scores[Task];
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
        if (cell < 0 || cell >= CellCount) throw new ConfigurationException($"archive of task {Task}: checkpoint cell {cell} is outside 0..{CellCount - 1}");
        _cells[cell] = elite;
    }

    /// <summary>Sum of the elites' qualities.</summary>
    public double QdScore => _cells.Values.Sum(e => e.Scores[Task]);

    /// <summary>Fraction of cells occupied.</summary>
    public double Coverage => (double)_cells.Count / CellCount;

    /// <summary>Highest quality in the archive, or NaN when empty.</summary>
    public double BestQuality => _cells.Count == 0 ? double.NaN : _cells.Values.Max(e => e.Scores[Task]);
}
