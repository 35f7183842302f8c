using CycleQD.Core.Archives;
using CycleQD.Core.Engine;
using ScottPlot;

namespace CycleQD.Runs;

/// <summary>
/// Elite maps as one PNG: a row of panels per archive, each a heatmap of elite quality over the
/// BC bins (empty cells blank). Two BCs give one 2-D map; more give one panel per BC pair (the best
/// quality over the other BCs); one BC gives a strip. The axes are in BC score units (the bins'
/// edges), the experts' cells carry a marker, and every panel uses one colour scale, so the same
/// colour means the same quality in every archive.
/// </summary>
public static class EliteMapPlot
{
    /// <summary>Renders the archives into <paramref name="path"/> (PNG, replaced atomically).</summary>
    public static void Write(string path, IReadOnlyList<Archive> archives, IReadOnlyList<string> tasks, int generation)
    {
        var panels = archives.Select(a => Panels(a).ToList()).ToList();
        int cols = Math.Max(1, panels.Max(p => p.Count));
        var range = ColourRange(archives);
        var mp = new Multiplot();
        mp.AddPlots(archives.Count * cols);
        mp.Layout = new ScottPlot.MultiplotLayouts.Grid(archives.Count, cols);
        for (int r = 0; r < archives.Count; r++)
        {
            var a = archives[r];
            for (int c = 0; c < cols; c++)
            {
                var plot = mp.GetPlot(r * cols + c);
                if (c >= panels[r].Count) { plot.Axes.Frameless(); plot.HideGrid(); continue; }
                var (x, y, data) = panels[r][c];
                var (xLo, xHi) = x < 0 ? (0.0, 1.0) : (a.Bins[x].Lower, a.Bins[x].Upper);
                var (yLo, yHi) = y < 0 ? (0.0, 1.0) : (a.Bins[y].Lower, a.Bins[y].Upper);
                // A one-row heatmap stretched over a rectangle is not drawn by ScottPlot; two equal rows look the same and are.
                var hm = plot.Add.Heatmap(data.GetLength(0) == 1 ? TwoRows(data) : data);
                hm.NaNCellColor = Colors.White;
                hm.ManualRange = range;
                // Bins are linspace(lower, upper): the map spans exactly the BC score range.
                hm.Rectangle = new CoordinateRect(xLo, xHi, yLo, yHi);
                var bar = plot.Add.ColorBar(hm);
                bar.Label = "quality (shared scale)";
                foreach (var (ex, ey, task) in ExpertCells(a, x, y))
                {
                    var m = plot.Add.Marker(xLo + (ex + 0.5) * (xHi - xLo) / data.GetLength(1), yLo + (ey + 0.5) * (yHi - yLo) / data.GetLength(0));
                    m.MarkerShape = MarkerShape.OpenDiamond;
                    m.MarkerSize = 14;
                    m.MarkerLineWidth = 2;
                    m.Color = Colors.Black;
                    var label = plot.Add.Text("expert " + task, m.X, m.Y);
                    label.LabelFontSize = 11;
                    label.LabelFontColor = Colors.Black;
                    // Labels point into the map, so one in the last column is not cut off by the frame.
                    bool right = ex >= data.GetLength(1) / 2.0;
                    label.LabelAlignment = right ? Alignment.LowerRight : Alignment.LowerLeft;
                    label.OffsetX = right ? -8 : 8;
                    label.OffsetY = -4;
                }
                plot.Axes.SetLimits(xLo, xHi, yLo, yHi);
                plot.Title(PanelTitle(a, x, y, tasks, generation));
                plot.XLabel(x < 0 ? "" : $"{tasks[a.BcTasks[x]]} score ({a.Bins[x].Count} bins)");
                plot.YLabel(y < 0 ? "" : $"{tasks[a.BcTasks[y]]} score ({a.Bins[y].Count} bins)");
                if (y < 0) plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual();
            }
        }
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.tmp-{Environment.ProcessId}.png");
        mp.SavePng(tmp, 560 * cols, 440 * archives.Count);
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>
    /// A panel's title: the archive, its elites and the generation; for an archive of more than two
    /// behaviour axes (a panel is a projection), also the axes each cell's best is taken over.
    /// </summary>
    internal static string PanelTitle(Archive a, int x, int y, IReadOnlyList<string> tasks, int generation)
    {
        string title = $"archive {CycleQDOptions.QualityName(a.Task, tasks)}: {a.Cells.Count} elites, gen {generation}";
        var over = Enumerable.Range(0, a.BcTasks.Count).Where(i => i != x && i != y).Select(i => tasks[a.BcTasks[i]]).ToList();
        return over.Count == 0 ? title : $"{title}; best over {string.Join(", ", over)}";
    }

    /// <summary>The colour scale every panel shares: the lowest to the highest quality over all archives (widened when they are equal).</summary>
    internal static ScottPlot.Range ColourRange(IReadOnlyList<Archive> archives)
    {
        var q = archives.SelectMany(a => a.Cells.Values.Select(e => a.QualityOf(e.Scores))).Where(double.IsFinite).ToList();
        if (q.Count == 0) return new ScottPlot.Range(0, 1);
        double lo = q.Min(), hi = q.Max();
        return hi > lo ? new ScottPlot.Range(lo, hi) : new ScottPlot.Range(lo - 0.5, hi + 0.5);
    }

    /// <summary>The panel bins (column, bin index up from the bottom) of the archive's expert elites, with each expert's task.</summary>
    internal static IEnumerable<(int X, int Y, string Task)> ExpertCells(Archive a, int x, int y)
    {
        foreach (var (cell, e) in a.Cells)
        {
            if (!EliteIds.TryGetExpertTask(e.Id, out string task)) continue;
            int[] c = a.BcTasks.Count == 0 ? [] : a.Unflatten(cell);
            yield return (x < 0 ? 0 : c[x], y < 0 ? 0 : c[y], task);
        }
    }

    /// <summary>(x BC index, y BC index or −1, data[row = y bin from the top, column = x bin]) per panel.</summary>
    internal static IEnumerable<(int X, int Y, double[,] Data)> Panels(Archive a)
    {
        int d = a.BcTasks.Count;
        if (d <= 1)
        {
            int g = d == 0 ? 1 : a.Bins[0].Count;
            var data = Empty(1, g);
            foreach (var (cell, e) in a.Cells)
            {
                int x = d == 0 ? 0 : a.Unflatten(cell)[0];
                data[0, x] = Math.Max(Nan0(data[0, x]), a.QualityOf(e.Scores));
            }
            yield return (d == 0 ? -1 : 0, -1, data);
            yield break;
        }
        for (int i = 0; i < d; i++)
            for (int j = i + 1; j < d; j++)
            {
                int gx = a.Bins[i].Count, gy = a.Bins[j].Count;
                var data = Empty(gy, gx);
                foreach (var (cell, e) in a.Cells)
                {
                    var c = a.Unflatten(cell);
                    int row = gy - 1 - c[j];
                    data[row, c[i]] = Math.Max(Nan0(data[row, c[i]]), a.QualityOf(e.Scores));
                }
                yield return (i, j, data);
            }
    }

    private static double[,] TwoRows(double[,] row)
    {
        var d = new double[2, row.GetLength(1)];
        for (int c = 0; c < row.GetLength(1); c++) d[0, c] = d[1, c] = row[0, c];
        return d;
    }

    private static double[,] Empty(int rows, int cols)
    {
        var d = new double[rows, cols];
        for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) d[r, c] = double.NaN;
        return d;
    }

    private static double Nan0(double v) => double.IsNaN(v) ? double.NegativeInfinity : v;
}
