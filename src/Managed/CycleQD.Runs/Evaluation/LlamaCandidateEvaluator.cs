using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Tensors;

namespace CycleQD.Runs.Evaluation;

/// <summary>
/// Scores a candidate Llama weight set on one <see cref="IBenchmark"/> per task with the ONNX
/// Runtime generator. The candidate's tensors are downloaded from the compute backend into
/// float32 host arrays allocated once (one per graph weight, the model's size in all); those arrays
/// are bound, pinned, to the model's one session as a <see cref="LlamaWeights"/>, so each
/// evaluation only overwrites them and nothing is rebuilt or reallocated between candidates.
/// </summary>
/// <remarks>
/// Lives in CycleQD.Runs rather than CycleQD.Core because it needs ONNX Runtime and the task data
/// (file I/O), which Core must stay free of; Runs is where an experiment's models and tasks are
/// put together, so it already is the layer that knows both sides. Evaluations are serialised:
/// the host arrays are shared, and ONNX Runtime already uses every core for one batch.
/// Owns the model, the host arrays and the generator; not the benchmarks' data.
/// </remarks>
public sealed class LlamaCandidateEvaluator : ICandidateEvaluator, IDisposable
{
    private readonly LlamaModel _model;
    private readonly IReadOnlyList<IBenchmark> _benchmarks;
    private readonly CandidateHostWeights _host;
    private readonly LlamaWeights _weights;
    private readonly ITextGenerator _generator;
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <inheritdoc/>
    public IReadOnlyList<string> TaskNames { get; }

    /// <param name="model">The base model folder opened for generation (its session and tokenizer serve every candidate); owned from here on.</param>
    /// <param name="taskNames">Task names, in score order.</param>
    /// <param name="benchmarks">One benchmark per task, same order.</param>
    public LlamaCandidateEvaluator(LlamaModel model, IReadOnlyList<string> taskNames, IReadOnlyList<IBenchmark> benchmarks)
    {
        if (taskNames.Count != benchmarks.Count) throw new ArgumentException($"{taskNames.Count} task names for {benchmarks.Count} benchmarks");
        _model = model;
        TaskNames = taskNames;
        _benchmarks = benchmarks;
        _host = new CandidateHostWeights(LlamaWeightLayout.For(model.Folder.Config), "the model's graph");
        // Float graph: FromArrays pins the arrays instead of copying them, so writing into them
        // rebinds the candidate for the next run.
        _weights = LlamaWeights.FromArrays(model.Folder.Config, _host.Arrays, "candidate", OnnxElementType.Float);
        _generator = model.CreateGenerator(_weights);
    }

    /// <inheritdoc/>
    public Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken) =>
        EvaluateAsync(backend, candidate, _benchmarks, cancellationToken);

    /// <summary>
    /// Scores <paramref name="candidate"/> on other benchmarks (e.g. the test split of the same tasks)
    /// with the same session and host arrays; one score per benchmark, in their order.
    /// </summary>
    public async Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, IReadOnlyList<IBenchmark> benchmarks, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            _host.Load(backend, candidate);
            var scores = new double[benchmarks.Count];
            for (int t = 0; t < benchmarks.Count; t++)
            {
                var report = await benchmarks[t].EvaluateAsync(_generator, null, cancellationToken).ConfigureAwait(false);
                scores[t] = report.Score;
            }
            return scores;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Releases the bound weights, the session and the model.</summary>
    public void Dispose()
    {
        _weights.Dispose();
        _model.Dispose();
        _gate.Dispose();
    }
}
