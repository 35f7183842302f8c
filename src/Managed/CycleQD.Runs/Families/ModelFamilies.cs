using CycleQD.Core;
using CycleQD.Runs.Families.Llama;
using CycleQD.Runs.Families.Sam;
using CycleQD.Runs.Families.Synthetic;

namespace CycleQD.Runs.Families;

/// <summary>
/// The catalog of model families: one registration each. Every place that maps a task name to what
/// scores it (the experiment parser, `run`, `eval`, `export`) asks here.
/// </summary>
public static class ModelFamilies
{
    /// <summary>The synthetic test problem (selected by model.synthetic, never by task name).</summary>
    public static IModelFamily Synthetic { get; } = new SyntheticFamily();

    /// <summary>Llama-family language models on the text benchmarks.</summary>
    public static LlamaFamily Llama { get; } = new();

    /// <summary>Segment Anything models on sam/&lt;dataset&gt; tasks.</summary>
    public static SamFamily Sam { get; } = new();

    /// <summary>The families real models can belong to, in the order messages list them.</summary>
    public static IReadOnlyList<IModelFamily> RealModels { get; } = [Llama, Sam];

    /// <summary>The real-model family that scores <paramref name="task"/>, or null.</summary>
    public static IModelFamily? OwnerOf(string task) => RealModels.FirstOrDefault(f => f.Owns(task));

    /// <summary>Every real-model task name, for messages.</summary>
    public static string KnownTasks => string.Join("; ", RealModels.Select(f => f.TaskSyntax));

    /// <summary>The family of <paramref name="config"/> (its model source and tasks; validated when the file was read).</summary>
    public static IModelFamily Of(ExperimentConfig config) =>
        config.Model.Synthetic != null ? Synthetic : OwnerOf(config.Options.Tasks[0])
            ?? throw new ConfigurationException($"tasks: '{config.Options.Tasks[0]}' is not a task this build can score real models on (known: {KnownTasks})");

    /// <summary>
    /// The search split's name for messages and tables: the one evaluation.split names, else each
    /// task's own default ("valid" for tinyskills/*, "train" for the paper's tasks), or "search" when
    /// the tasks' defaults differ.
    /// </summary>
    public static string SearchSplitName(ExperimentConfig config)
    {
        if (config.Evaluation.Split is { } split) return split;
        var names = config.Options.Tasks.Select(t => TextTasks.Find(t)?.Splits[0] ?? "search").Distinct().ToList();
        return names.Count == 1 ? names[0] : "search";
    }
}
