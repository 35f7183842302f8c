using CycleQD.Core.Engine;
using Microsoft.Extensions.Logging;

namespace CycleQD.Runs;

/// <summary>
/// Optional <see cref="ILogger"/> plumbing for hosts: the libraries never write to the console; a
/// host that wants a run's events in its own logs passes its logger here instead of reading the
/// values itself.
/// </summary>
public static class RunLogging
{
    /// <summary>
    /// A notice callback for <see cref="RunSession.Start"/> / <see cref="RunSession.Resume"/> that
    /// logs each line: lines that start with "warning:" at <see cref="LogLevel.Warning"/>, the rest
    /// at <see cref="LogLevel.Information"/>.
    /// </summary>
    public static Action<string> Notices(ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(logger);
        return line =>
        {
            if (line.StartsWith("warning:", StringComparison.Ordinal)) logger.LogWarning("{Notice}", line);
            else logger.LogInformation("{Notice}", line);
        };
    }

    /// <summary>
    /// Logs every committed generation of <paramref name="session"/> at <see cref="LogLevel.Information"/>
    /// (generation, quality task, the child's scores, the cells it took, evaluation seconds, and the
    /// worker when it was scored elsewhere), and a non-finite child at <see cref="LogLevel.Warning"/>.
    /// Returns a handle that stops logging when disposed.
    /// </summary>
    public static IDisposable Attach(RunSession session, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(logger);
        var tasks = session.Config.Options.Tasks;
        void OnGeneration(GenerationRecord r)
        {
            if (r.NonFinite is { } why)
            {
                logger.LogWarning("generation {Generation}: the child's weights are not finite ({Reason}); scored 0, not archived", r.Generation, why);
                return;
            }
            logger.LogInformation("generation {Generation}: quality task {QualityTask}, scores {Scores}, {Insertions} cell(s) taken, evaluated in {EvaluateSeconds:0.###} s{Worker}",
                r.Generation, CycleQDOptions.QualityName(r.QualityTask, tasks), string.Join(", ", tasks.Select((t, i) => $"{t} {r.Scores[i]:0.####}")), r.Insertions.Count,
                r.Timing.EvaluateSeconds, r.EvaluatedBy is { } w ? " by " + w : "");
        }
        session.Engine.GenerationCompleted += OnGeneration;
        return new Detach(() => session.Engine.GenerationCompleted -= OnGeneration);
    }

    private sealed class Detach(Action detach) : IDisposable
    {
        private Action? _detach = detach;

        public void Dispose() => Interlocked.Exchange(ref _detach, null)?.Invoke();
    }
}
