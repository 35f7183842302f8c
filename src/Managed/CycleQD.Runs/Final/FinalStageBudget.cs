namespace CycleQD.Runs.Final;

/// <summary>The most evaluations the final stage of an experiment makes, for the cost estimate of <c>run --dry-run</c>.</summary>
public static class FinalStageBudget
{
    /// <summary>
    /// (search-split, report-split) evaluations: base, experts, every task-arithmetic λ, TIES, the
    /// weight search and the final model; each expert or elite scored once on the report split.
    /// </summary>
    public static (int Search, int Report) MaxEvaluations(ExperimentConfig config)
    {
        if (!config.FinalMerge.Enabled) return (0, 0);
        var fm = config.FinalMerge;
        int n = config.Options.Tasks.Count;
        int elites = Math.Min(7, fm.Top * n + fm.Generalists);
        int search = 1 + config.Report.TaskArithmeticLambdas.Count + 1 + FinalMergeSearch.MaxEvaluations(elites, fm.Grid.Count, fm.Rounds);
        // base, experts, task arithmetic, TIES, each archive's best elite, the final model.
        int report = 1 + n + 1 + 1 + n + 1;
        return (search, report);
    }
}
