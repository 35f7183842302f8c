using System.Text.Json;
using ScottPlot;

namespace CycleQD.Runs;

/// <summary>Per archive, one value after each generation, read from metrics.jsonl.</summary>
/// <param name="Tasks">The archives' tasks, in order.</param>
/// <param name="Generations">Generation numbers counted from 1 (the value after that many generations).</param>
/// <param name="QdScore">[archive][point] QD score.</param>
/// <param name="Coverage">[archive][point] fraction of cells filled, 0–1.</param>
/// <param name="Best">[archive][point] best quality in the archive.</param>
public sealed record ProgressSeries(IReadOnlyList<string> Tasks, double[] Generations, double[][] QdScore, double[][] Coverage, double[][] Best)
{
    /// <summary>Reads every complete line of <paramref name="metricsPath"/> (a line still being appended is left out).</summary>
    /// <exception cref="RunDirectoryException">a line is not a metrics record (names the file and the line).</exception>
    public static ProgressSeries Read(string metricsPath, IReadOnlyList<string> tasks)
    {
        var gens = new List<double>();
        var qd = tasks.Select(_ => new List<double>()).ToArray();
        var cov = tasks.Select(_ => new List<double>()).ToArray();
        var best = tasks.Select(_ => new List<double>()).ToArray();
        string text = File.Exists(metricsPath) ? ReadShared(metricsPath) : "";
        int end = text.LastIndexOf('\n');
        int lineNo = 0;
        foreach (string line in (end < 0 ? "" : text[..end]).Split('\n'))
        {
            lineNo++;
            if (line.Length == 0) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var r = doc.RootElement;
                gens.Add(r.GetProperty("generation").GetInt32() + 1);
                for (int t = 0; t < tasks.Count; t++)
                {
                    qd[t].Add(r.GetProperty("qd_score").GetProperty(tasks[t]).GetDouble());
                    cov[t].Add(r.GetProperty("coverage").GetProperty(tasks[t]).GetDouble());
                    best[t].Add(r.GetProperty("best").GetProperty(tasks[t]) is { ValueKind: JsonValueKind.Number } b ? b.GetDouble() : double.NaN);
                }
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new RunDirectoryException($"{metricsPath}: line {lineNo} is not a metrics record ({e.Message})");
            }
        }
        return new ProgressSeries(tasks, gens.ToArray(), qd.Select(l => l.ToArray()).ToArray(), cov.Select(l => l.ToArray()).ToArray(), best.Select(l => l.ToArray()).ToArray());
    }

    private static string ReadShared(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(fs);
        return reader.ReadToEnd();
    }
}

/// <summary>
/// plots/progress.png: three panels over generations, one line per archive: QD score, coverage (%),
/// and the best quality (the best score reached on each task).
/// </summary>
public static class ProgressPlot
{
    /// <summary>Renders <paramref name="series"/> into <paramref name="path"/> (PNG, replaced atomically); nothing is written before the first generation.</summary>
    /// <returns>Whether a plot was written.</returns>
    public static bool Write(string path, ProgressSeries series)
    {
        if (series.Generations.Length == 0) return false;
        var mp = new Multiplot();
        mp.AddPlots(3);
        mp.Layout = new ScottPlot.MultiplotLayouts.Columns();
        Panel(mp.GetPlot(0), series, series.QdScore, "QD score", "QD score (sum of elite qualities)", 1);
        Panel(mp.GetPlot(1), series, series.Coverage, "coverage", "cells filled (%)", 100);
        Panel(mp.GetPlot(2), series, series.Best, "best per task", "best quality", 1);
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.tmp-{Environment.ProcessId}.png");
        mp.SavePng(tmp, 1500, 460);
        File.Move(tmp, path, overwrite: true);
        return true;
    }

    private static void Panel(Plot plot, ProgressSeries s, double[][] values, string title, string yLabel, double scale)
    {
        var palette = new ScottPlot.Palettes.Category10();
        for (int t = 0; t < s.Tasks.Count; t++)
        {
            var line = plot.Add.ScatterLine(s.Generations, values[t].Select(v => v * scale).ToArray());
            line.LegendText = s.Tasks[t];
            line.Color = palette.GetColor(t);
            line.LineWidth = 2;
            // One point per generation is a line; a handful of generations also shows each point.
            line.MarkerSize = s.Generations.Length <= 30 ? 5 : 0;
        }
        plot.Title(title);
        plot.XLabel("generation");
        plot.YLabel(yLabel);
        plot.ShowLegend(Alignment.LowerRight);
    }
}
