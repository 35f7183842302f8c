using CycleQD.Core.Archives;
using ScottPlot;

namespace CycleQD.Runs;

/// <summary>
/// Elite maps as one PNG: a row of panels per archive, each a heatmap of elite quality over the
/// BC bins (empty cells blank). Two BCs give one 2-D map; more give one panel per BC pair (the best
/// quality over the other BCs); one BC gives a strip.
/// </summary>
public static class EliteMapPlot
{
    /// <summary>Renders the archives into <paramref name="path"/> (PNG, replaced atomically).</summary>
    public static void Write(string path, IReadOnlyList<Archive> archives, IReadOnlyList<string> tasks, int generation)
    {
        var panels = archives.Select(a => Panels(a).ToList()).ToList();
        int cols = Math.Max(1, panels.Max(p => p.Count));
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
                var hm = plot.Add.Heatmap(data);
                hm.NaNCellColor = Colors.White;
                plot.Add.ColorBar(hm);
                plot.Title($"archive {tasks[a.Task]} (quality), gen {generation}");
                plot.XLabel(x < 0 ? "" : $"{tasks[a.BcTasks[x]]} bin");
                plot.YLabel(y < 0 ? "" : $"{tasks[a.BcTasks[y]]} bin");
            }
        }
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.tmp-{Environment.ProcessId}.png");
        mp.SavePng(tmp, 520 * cols, 420 * archives.Count);
        File.Move(tmp, path, overwrite: true);
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
                data[0, x] = Math.Max(Nan0(data[0, x]), e.Scores[a.Task]);
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
                    data[row, c[i]] = Math.Max(Nan0(data[row, c[i]]), e.Scores[a.Task]);
                }
                yield return (i, j, data);
            }
    }

    private static double[,] Empty(int rows, int cols)
    {
        var d = new double[rows, cols];
        for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) d[r, c] = double.NaN;
        return d;
    }

    private static double Nan0(double v) => double.IsNaN(v) ? double.NegativeInfinity : v;
}
