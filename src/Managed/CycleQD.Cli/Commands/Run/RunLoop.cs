using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using CycleQD.Core.Engine;
using CycleQD.Runs;
using CycleQD.Runs.Families;
using Spectre.Console;

namespace CycleQD.Cli.Commands.Run;

/// <summary>Drives a <see cref="RunSession"/> to its target with progress lines; Ctrl-C or SIGTERM stops after the last committed generation.</summary>
internal static class RunLoop
{
    public static int Execute(RunSession session, TextWriter o)
    {
        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cts.Cancel(); };
        Console.CancelKeyPress += onCancel;
        using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; cts.Cancel(); });
        bool inFinal = false;
        try
        {
            var tasks = session.Config.Options.Tasks;
            int target = session.TargetGenerations;
            var labels = TaskLabels.ShortAll(tasks);
            o.WriteLine($"run: {session.Directory.Path}");
            o.WriteLine($"experiment '{session.Config.Name}': tasks {string.Join(", ", tasks)}; seed {session.Directory.Info.Seed}; target {target} generations; backend {session.BackendName}");
            session.Warn = m => o.WriteLine("warning: " + m);
            session.Engine.GenerationCompleted += r =>
            {
                if (r.NonFinite is { } why)
                    o.WriteLine($"warning: generation {r.Generation}: the child's weights are not finite ({why}); scored 0, not archived");
            };
            session.InitializeAsync(cts.Token).GetAwaiter().GetResult();
            int start = session.Engine.NextGeneration;
            if (start == 0 && session.Engine.Archives.Count > 0)
                foreach (var a in session.Engine.Archives)
                    o.WriteLine($"  archive {CycleQDOptions.QualityName(a.Task, tasks)}: {a.Cells.Count} expert elite(s), best {a.BestQuality.ToString("F4", CultureInfo.InvariantCulture)}");
            var clock = Stopwatch.StartNew();
            bool finished;
            if (ReferenceEquals(o, Console.Out) && !Console.IsOutputRedirected)
            {
                // A terminal: one live progress bar (generation, quality task, last child's scores, ETA).
                bool ok = false;
                AnsiConsole.Progress().AutoClear(false)
                    .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                    .Start(ctx =>
                    {
                        var bar = ctx.AddTask(Markup.Escape($"gen {start}/{target}"), maxValue: Math.Max(1, target));
                        bar.Value = start;
                        session.Engine.GenerationCompleted += r =>
                        {
                            bar.Value = r.Generation + 1;
                            bar.Description = Markup.Escape($"gen {r.Generation + 1}/{target}  quality {CycleQDOptions.QualityName(r.QualityTask, labels)}  child {ProgressLine.Child(r, labels)}");
                        };
                        ok = session.RunAsync(cts.Token).GetAwaiter().GetResult();
                    });
                finished = ok;
            }
            else
            {
                // Redirected output: plain lines, about a hundred per run.
                int every = Math.Max(1, (target - start) / 100);
                session.Engine.GenerationCompleted += r =>
                {
                    int done = r.Generation + 1;
                    if (done % every != 0 && done != target) return;
                    double perGen = clock.Elapsed.TotalSeconds / Math.Max(1, done - start);
                    var eta = TimeSpan.FromSeconds(perGen * (target - done));
                    o.WriteLine(ProgressLine.Format(r, target, labels, eta));
                };
                finished = session.RunAsync(cts.Token).GetAwaiter().GetResult();
            }
            if (!finished)
            {
                o.WriteLine($"stopped after generation {session.Engine.NextGeneration} (checkpoint saved); continue with: cycleqd resume {session.Directory.Path}");
                return 130;
            }
            o.WriteLine($"search: {session.Engine.NextGeneration} generations in {clock.Elapsed.TotalSeconds.ToString("F1", CultureInfo.InvariantCulture)} s");
            WriteArchiveSummary(session, o);
            if (session.HasFinalStage)
            {
                var finalClock = Stopwatch.StartNew();
                inFinal = true;
                var report = session.FinishAsync(o.WriteLine, cts.Token).GetAwaiter().GetResult()!;
                o.WriteLine($"final stage: {finalClock.Elapsed.TotalSeconds.ToString("F1", CultureInfo.InvariantCulture)} s");
                o.WriteLine();
                o.WriteLine($"Test split, accuracy % ({report.SearchSplit} avg: the split λ and the final weights were chosen on); {session.Directory.ReportPath}");
                if (session.Config.Evaluation.Responder is { } responder)
                    o.WriteLine($"(scored by the stand-in responder {responder}, not by the model: the numbers test the harnesses)");
                o.Write(report.ToText());
                o.WriteLine();
            }
            o.WriteLine($"done: see {session.Directory.SummaryPath}");
            return 0;
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            o.WriteLine(inFinal
                ? $"stopped during the final stage (scores so far kept in report.json); finish it with: cycleqd resume {session.Directory.Path}"
                : "stopped before the experts were scored; nothing to resume yet");
            return 130;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>Per archive: elites, coverage, QD score and the best elite (the table summary.md also holds).</summary>
    internal static void WriteArchiveSummary(RunSession session, TextWriter o)
    {
        var tasks = session.Config.Options.Tasks;
        var inv = CultureInfo.InvariantCulture;
        var table = new TextTable("archive", "elites", "coverage", "QD score", "best", "best elite").AlignRight(1, 2, 3, 4);
        foreach (var a in session.Engine.Archives)
        {
            var best = a.Cells.Values.MaxBy(e => a.QualityOf(e.Scores));
            table.Add(CycleQDOptions.QualityName(a.Task, tasks), a.Cells.Count.ToString(inv), a.Coverage.ToString("P1", inv), a.QdScore.ToString("F4", inv),
                a.BestQuality.ToString("F4", inv), best is null ? "-" : best.Generation < 0 ? best.Id : $"{best.Id} (gen {best.Generation})");
        }
        o.WriteLine();
        table.Write(o);
        o.WriteLine();
    }

    private static string Scores(GenerationRecord r) => string.Join(", ", r.Scores.Select(s => s.ToString("F3", CultureInfo.InvariantCulture)));
}
