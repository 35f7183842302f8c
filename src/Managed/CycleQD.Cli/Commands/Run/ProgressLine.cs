using System.Globalization;
using CycleQD.Core.Engine;

namespace CycleQD.Cli.Commands.Run;

/// <summary>
/// The plain progress line of run/resume with every number labelled by its short task name:
/// <c>gen 12/150  quality code  child code 0.310 db 0.250 os 0.400  improved 1  qd code 1.09 db 0.84 os 1.11  eta 00:03:10</c>.
/// </summary>
internal static class ProgressLine
{
    /// <param name="r">The generation just committed.</param>
    /// <param name="target">Generations to reach.</param>
    /// <param name="labels">Short task name per task (<see cref="Runs.Families.TaskLabels.ShortAll"/>).</param>
    /// <param name="eta">Estimated time to the target.</param>
    public static string Format(GenerationRecord r, int target, IReadOnlyList<string> labels, TimeSpan eta) =>
        $"gen {r.Generation + 1}/{target}  quality {CycleQDOptions.QualityName(r.QualityTask, labels)}  child {Child(r, labels)}  improved {r.Insertions.Count}  " +
        $"qd {string.Join(" ", r.Archives.Select(a => $"{CycleQDOptions.QualityName(a.Task, labels)} {a.QdScore.ToString("F2", CultureInfo.InvariantCulture)}"))}  eta {eta:hh\\:mm\\:ss}";

    /// <summary>The child's score per task, labelled: "code 0.310 db 0.250 os 0.400".</summary>
    public static string Child(GenerationRecord r, IReadOnlyList<string> labels) =>
        string.Join(" ", r.Scores.Select((s, t) => $"{labels[t]} {s.ToString("F3", CultureInfo.InvariantCulture)}"));
}
