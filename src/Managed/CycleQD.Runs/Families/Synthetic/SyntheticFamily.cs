using CycleQD.Core;
using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using CycleQD.Core.Synthetic;
using CycleQD.Cuda.Backend;

namespace CycleQD.Runs.Families.Synthetic;

/// <summary>
/// The synthetic test problem (model.synthetic): random base and expert tensors and closed-form
/// scores, any task names, no model files. It has no held-out split, so no final stage.
/// </summary>
public sealed class SyntheticFamily : IModelFamily
{
    /// <inheritdoc/>
    public string Name => "synthetic";

    /// <inheritdoc/>
    public string TaskSyntax => "any names (with model.synthetic)";

    /// <inheritdoc/>
    public IReadOnlyList<string> ModelTypes => [];

    /// <inheritdoc/>
    public string ModelKind => "the synthetic test problem (no model files)";

    /// <inheritdoc/>
    public ModelFolderFiles CarriedFiles(string folder) =>
        throw new Tensors.TensorFormatException(folder, null, "the synthetic problem has no model folders (no config.json to carry)");

    /// <inheritdoc/>
    public bool Owns(string task) => true;

    /// <inheritdoc/>
    public bool ReportsByDefault(ExperimentConfig config) => false;

    /// <inheritdoc/>
    public void Validate(ExperimentConfig config)
    {
        if (config.FinalMerge.Enabled)
            throw new ConfigurationException("final_merge.enabled: the final merge and its report need real models (model.base and model.experts); the synthetic problem has no test split");
    }

    /// <inheritdoc/>
    public Task CheckEnvironmentAsync(ExperimentConfig config, CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc/>
    public RunSplits MakeSplits(ExperimentConfig config) =>
        new(config.Options.Tasks.ToDictionary(t => t, _ => new TaskSplit("all", "all", null, null), StringComparer.Ordinal), config.Evaluation.SplitSeed);

    private static SyntheticProblem Problem(ExperimentConfig config) => new(config.Options.Tasks, config.Model.Synthetic!);

    /// <inheritdoc/>
    public RunModels LoadModels(ExperimentConfig config, IComputeBackend backend)
    {
        var problem = Problem(config);
        // Resident on a GPU: base, experts, the child being built and two parents.
        if (backend is CudaComputeBackend gpu)
            gpu.EnsureResidentFits(problem.BaseModel().Tensors, config.Options.Tasks.Count + CudaComputeBackend.RunSetsBesidesExperts, config.Options.Mutation);
        var baseWeights = backend.Upload(problem.BaseModel());
        var experts = new List<KeyValuePair<string, IWeightSet>>();
        try
        {
            for (int k = 0; k < config.Options.Tasks.Count; k++)
                experts.Add(new(config.Options.Tasks[k], backend.Upload(problem.Expert(k))));
        }
        catch
        {
            new RunModels(baseWeights, experts).Dispose();
            throw;
        }
        return new RunModels(baseWeights, experts);
    }

    /// <inheritdoc/>
    public IRunEvaluator OpenEvaluator(ExperimentConfig config, RunSplits splits) =>
        new Evaluator(Problem(config), TimeSpan.FromSeconds(config.Model.SimulatedEvaluationSeconds));

    /// <inheritdoc/>
    public IReadOnlyList<TaskCost> Costs(ExperimentConfig config, RunSplits splits) =>
        config.Options.Tasks.Select(t => new TaskCost(t, 0, 0, 0, "closed-form score, no model calls")).ToList();

    /// <summary>The problem's closed-form scores, after the simulated cost (a plain sleep) when one is set.</summary>
    private sealed class Evaluator(SyntheticProblem problem, TimeSpan simulatedCost) : IRunEvaluator
    {
        public IReadOnlyList<string> TaskNames => problem.TaskNames;

        public async Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken)
        {
            var scores = await problem.EvaluateAsync(backend, candidate, cancellationToken).ConfigureAwait(false);
            if (simulatedCost > TimeSpan.Zero) await Task.Delay(simulatedCost, cancellationToken).ConfigureAwait(false);
            return scores;
        }

        public Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, EvaluationPurpose purpose, CancellationToken cancellationToken) =>
            purpose == EvaluationPurpose.Search ? EvaluateAsync(backend, candidate, cancellationToken)
                : throw new InvalidOperationException("the synthetic problem has no report split");

        public void Dispose()
        {
        }
    }
}
