using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Sam;
using CycleQD.Segmentation.Sam;
using CycleQD.Tensors;

namespace CycleQD.Runs.Families.Sam;

/// <summary>
/// Scores a candidate SAM weight set on one <see cref="SamBenchmark"/> per task (one dataset each;
/// each task is an archive and the other tasks' scores are its behaviour characteristics). As for
/// Llama, the candidate's graph tensors are downloaded from the compute backend into float32 host
/// arrays allocated once; a predictor bound to those arrays (pinned, not copied) serves every
/// candidate, so an evaluation only overwrites them.
/// </summary>
/// <remarks>
/// Evaluations are serialised: the host arrays are shared and ONNX Runtime already uses every core.
/// Owns the predictor and whatever <c>owner</c> it was given (the model and its sessions); not the datasets.
/// </remarks>
public sealed class SamCandidateEvaluator : IRunEvaluator
{
    private readonly IReadOnlyList<SamBenchmark> _benchmarks;
    private readonly IReadOnlyList<SamBenchmark> _report;
    private readonly CandidateHostWeights _host;
    private readonly ISamPredictor _predictor;
    private readonly IDisposable? _owner;
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <inheritdoc/>
    public IReadOnlyList<string> TaskNames { get; }

    /// <param name="graphWeights">The tensors the SAM graphs read (names and shapes); other candidate tensors are ignored.</param>
    /// <param name="bind">Makes a predictor over the host arrays it is given (keyed by tensor name; it must read them at every run, not copy them).</param>
    /// <param name="owner">Disposed with the evaluator, after the predictor (e.g. the model whose sessions <paramref name="bind"/> uses); may be null.</param>
    /// <param name="taskNames">Task names, in score order.</param>
    /// <param name="benchmarks">One benchmark per task on its search data, same order.</param>
    /// <param name="report">One benchmark per task on its held-out data (null: the search ones).</param>
    public SamCandidateEvaluator(IReadOnlyList<LlamaWeightSpec> graphWeights, Func<IReadOnlyDictionary<string, float[]>, ISamPredictor> bind,
        IDisposable? owner, IReadOnlyList<string> taskNames, IReadOnlyList<SamBenchmark> benchmarks, IReadOnlyList<SamBenchmark>? report = null)
    {
        if (taskNames.Count != benchmarks.Count || (report != null && report.Count != benchmarks.Count))
            throw new ArgumentException($"{taskNames.Count} task names for {benchmarks.Count} benchmarks");
        TaskNames = taskNames;
        _benchmarks = benchmarks;
        _report = report ?? benchmarks;
        _owner = owner;
        _host = new CandidateHostWeights(graphWeights, "the SAM graphs");
        _predictor = bind(_host.Arrays);
    }

    /// <inheritdoc/>
    public Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken) =>
        EvaluateAsync(backend, candidate, EvaluationPurpose.Search, cancellationToken);

    /// <inheritdoc/>
    public async Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, EvaluationPurpose purpose, CancellationToken cancellationToken)
    {
        var benchmarks = purpose == EvaluationPurpose.Search ? _benchmarks : _report;
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            _host.Load(backend, candidate);
            var scores = new double[benchmarks.Count];
            for (int t = 0; t < benchmarks.Count; t++)
            {
                var report = await benchmarks[t].EvaluateAsync(_predictor, null, cancellationToken).ConfigureAwait(false);
                scores[t] = report.Score;
            }
            return scores;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Releases the predictor, then the owner.</summary>
    public void Dispose()
    {
        _predictor.Dispose();
        _owner?.Dispose();
        _gate.Dispose();
    }
}
