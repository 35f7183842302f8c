namespace CycleQD.Core.Archives;

/// <summary>A model kept in one or more archives.</summary>
/// <param name="Id">Weight-set id: "expert:NAME" for a seed expert, else the content hash the elite store gave it.</param>
/// <param name="Scores">Score on every task, in task order (each in [0, 1]).</param>
/// <param name="Generation">Generation that produced it; −1 for an expert.</param>
public sealed record Elite(string Id, IReadOnlyList<double> Scores, int Generation);
