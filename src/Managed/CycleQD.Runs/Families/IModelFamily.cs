using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;

namespace CycleQD.Runs.Families;

/// <summary>Which of a task's splits an evaluation scores.</summary>
public enum EvaluationPurpose
{
    /// <summary>The split the search (and the final merge's weight search) selects on.</summary>
    Search,

    /// <summary>The held-out split the end-of-run table reports.</summary>
    Report,
}

/// <summary>
/// The evaluator a model family opens for a run: scores a candidate on every task of the experiment,
/// on the search split (<see cref="ICandidateEvaluator.EvaluateAsync(IComputeBackend, IWeightSet, CancellationToken)"/>) or the report split.
/// Owns the sessions it opened; evaluations may be serialised internally.
/// </summary>
public interface IRunEvaluator : ICandidateEvaluator, IDisposable
{
    /// <summary>Scores of <paramref name="candidate"/> on every task's <paramref name="purpose"/> split, in task order.</summary>
    Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, EvaluationPurpose purpose, CancellationToken cancellationToken);
}

/// <summary>The base model and the experts of a run, uploaded to its compute backend; disposing frees them.</summary>
/// <param name="Base">The base weights.</param>
/// <param name="Experts">One expert per task, in task order.</param>
public sealed record RunModels(IWeightSet Base, IReadOnlyList<KeyValuePair<string, IWeightSet>> Experts) : IDisposable
{
    /// <summary>Frees the experts, then the base.</summary>
    public void Dispose()
    {
        foreach (var e in Experts) e.Value.Dispose();
        Base.Dispose();
    }
}

/// <summary>
/// A kind of model CycleQD can search over (Llama-family language models, SAM, the synthetic
/// problem): the plug-in point of runs. A family owns its task names and everything that depends on
/// them: checking an experiment's evaluation settings, checking that every task's environment starts,
/// fixing the splits, loading the models and opening the evaluator. <see cref="ModelFamilies"/>
/// holds one instance of each; `run`, `eval`, `export` and the experiment parser all look tasks up
/// there, so adding a family or a task is one registration.
/// </summary>
public interface IModelFamily
{
    /// <summary>Short name ("llama", "sam", "synthetic").</summary>
    string Name { get; }

    /// <summary>The task names this family scores, as shown in messages (e.g. "mbpp, agentbench_db").</summary>
    string TaskSyntax { get; }

    /// <summary>The config.json model_type values of this family's model folders (empty when it has no model folders).</summary>
    IReadOnlyList<string> ModelTypes { get; }

    /// <summary>What the family's models are, for messages ("a Llama-family language model").</summary>
    string ModelKind { get; }

    /// <summary>
    /// Checks that <paramref name="folder"/> is a usable model folder of this family (its model_type and
    /// config) and lists the files, besides the weights, that a model exported or merged from it carries.
    /// </summary>
    /// <exception cref="Tensors.TensorFormatException">the folder is missing, of another kind, or its config is invalid (names the file).</exception>
    ModelFolderFiles CarriedFiles(string folder);

    /// <summary>Whether <paramref name="task"/> is one of this family's tasks.</summary>
    bool Owns(string task);

    /// <summary>Whether runs of this family have a held-out split, and so a final stage and a report, by default.</summary>
    bool ReportsByDefault(ExperimentConfig config);

    /// <summary>Checks the experiment's settings for this family's tasks (data folders, splits); throws <see cref="Core.ConfigurationException"/> naming the key.</summary>
    void Validate(ExperimentConfig config);

    /// <summary>
    /// Starts (and stops) every environment the tasks need (sandbox, database server), so a run that
    /// cannot score a task stops before anything is written; throws naming the task and the cause.
    /// </summary>
    Task CheckEnvironmentAsync(ExperimentConfig config, CancellationToken cancellationToken);

    /// <summary>The sample ids of each task's search and report splits (null ids: the task's own named split files).</summary>
    RunSplits MakeSplits(ExperimentConfig config);

    /// <summary>Loads the base and the experts onto <paramref name="backend"/>.</summary>
    RunModels LoadModels(ExperimentConfig config, IComputeBackend backend);

    /// <summary>Opens the evaluator of the run (its sessions, its benchmarks on <paramref name="splits"/>).</summary>
    IRunEvaluator OpenEvaluator(ExperimentConfig config, RunSplits splits);

    /// <summary>
    /// Opens the evaluator of a run whose candidates live on <paramref name="backend"/>: a family whose
    /// models can run where the backend keeps the candidates (e.g. on its GPU) opens its sessions
    /// there and reads each candidate in place. By default the same as <see cref="OpenEvaluator(ExperimentConfig, RunSplits)"/>.
    /// </summary>
    /// <exception cref="Onnx.Runtime.ExecutionProviderUnavailableException">the backend's device cannot run the family's models (names what is missing).</exception>
    IRunEvaluator OpenEvaluator(ExperimentConfig config, RunSplits splits, IComputeBackend backend) => OpenEvaluator(config, splits);

    /// <summary>
    /// The environments the tasks' verdicts depend on (e.g. AgentBench OS's root file system), with
    /// their content hashes; the run directory records them so scores are compared only under the same ones.
    /// </summary>
    IReadOnlyList<PinnedEnvironmentRecord> PinnedEnvironments(ExperimentConfig config, RunSplits splits) => [];

    /// <summary>What one candidate's evaluation costs, for <c>run --dry-run</c>: per task, prompts (or images) and the most tokens generated.</summary>
    IReadOnlyList<TaskCost> Costs(ExperimentConfig config, RunSplits splits);

    /// <summary>
    /// The final table's columns for the experiment's report.retention tasks (name, unit, direction),
    /// in order. By default a family has none and refuses any.
    /// </summary>
    /// <exception cref="Core.ConfigurationException">a retention task this family cannot score.</exception>
    IReadOnlyList<Final.RetentionColumn> RetentionColumns(ExperimentConfig config) =>
        config.Report.Retention.Count == 0 ? []
            : throw new Core.ConfigurationException($"report.retention: {ModelKind} runs have no retention tasks ({string.Join(", ", config.Report.Retention)})");

    /// <summary>
    /// What the retention scores depend on besides the task names (e.g. a text file's content hash), appended
    /// to the final stage's evaluation key so cached scores go stale when it changes; "" by default.
    /// </summary>
    string RetentionKey(ExperimentConfig config) => "";
}

/// <summary>One task's cost per candidate.</summary>
/// <param name="Task">Task name.</param>
/// <param name="Samples">Samples scored on the search split.</param>
/// <param name="ModelCalls">Most model calls (prompts; multi-turn tasks: samples × rounds).</param>
/// <param name="MaxGeneratedTokens">Most tokens generated (model calls × max new tokens; 0 for non-generative tasks).</param>
/// <param name="Note">How the figures were counted.</param>
public sealed record TaskCost(string Task, int Samples, long ModelCalls, long MaxGeneratedTokens, string Note);

/// <summary>One task's pinned environment.</summary>
/// <param name="Task">Task name.</param>
/// <param name="Name">What the environment is ("AgentBench OS root file system").</param>
/// <param name="Fingerprint">Its content hash ("sha256:…").</param>
public sealed record PinnedEnvironmentRecord(string Task, string Name, string Fingerprint);
