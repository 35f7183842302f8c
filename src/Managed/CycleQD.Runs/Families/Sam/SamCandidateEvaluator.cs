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
/// Llama, a float32 candidate that lies where the sessions run (the CPU backend's sets on the CPU
/// provider, the CUDA backend's on the CUDA provider) is bound in place through a predictor made for
/// it; otherwise its graph tensors are downloaded into float32 host arrays allocated on first use,
/// which one predictor reads (CPU provider only). A set the CUDA backend keeps in host memory is
/// first copied to the device.
/// </summary>
/// <remarks>
/// Evaluations are serialised. Owns the predictors and whatever <c>owner</c> it was given (the model
/// and its sessions); not the datasets.
/// </remarks>
public sealed class SamCandidateEvaluator : IRunEvaluator, IEvaluationStatisticsSource
{
    private readonly IReadOnlyList<SamBenchmark> _benchmarks;
    private readonly IReadOnlyList<SamBenchmark> _report;
    private readonly IReadOnlyList<LlamaWeightSpec> _graph;
    private readonly Func<IReadOnlyDictionary<string, float[]>, ISamPredictor> _bind;
    private readonly Func<IReadOnlyDictionary<string, (nint Pointer, long Bytes)>, ISamPredictor>? _bindInPlace;
    private readonly bool _cuda;
    private readonly int _cudaDevice;
    private CandidateHostWeights? _host;
    private ISamPredictor? _hostPredictor;
    private ISamPredictor? _inPlace;
    private IWeightSet? _deviceCopy;
    private readonly IDisposable? _owner;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<IWeightSet, double> _bindSeconds = new(ReferenceEqualityComparer.Instance);

    /// <inheritdoc/>
    public IReadOnlyList<string> TaskNames { get; }

    /// <summary>How the last candidate reached the sessions: "in place" or "host arrays" (null before the first).</summary>
    public string? LastBinding { get; private set; }

    /// <param name="graphWeights">The tensors the SAM graphs read (names and shapes); other candidate tensors are ignored.</param>
    /// <param name="bind">Makes a predictor over the host arrays it is given (keyed by tensor name; it must read them at every run, not copy them).</param>
    /// <param name="owner">Disposed with the evaluator, after the predictors (e.g. the model whose sessions <paramref name="bind"/> uses); may be null.</param>
    /// <param name="taskNames">Task names, in score order.</param>
    /// <param name="benchmarks">One benchmark per task on its search data, same order.</param>
    /// <param name="report">One benchmark per task on its held-out data (null: the search ones).</param>
    /// <param name="bindInPlace">Makes a predictor over float32 tensors where the sessions run (address and bytes by name); null: always host arrays.</param>
    /// <param name="cudaDevice">The sessions' GPU when they run on the CUDA provider, else null.</param>
    public SamCandidateEvaluator(IReadOnlyList<LlamaWeightSpec> graphWeights, Func<IReadOnlyDictionary<string, float[]>, ISamPredictor> bind,
        IDisposable? owner, IReadOnlyList<string> taskNames, IReadOnlyList<SamBenchmark> benchmarks, IReadOnlyList<SamBenchmark>? report = null,
        Func<IReadOnlyDictionary<string, (nint Pointer, long Bytes)>, ISamPredictor>? bindInPlace = null, int? cudaDevice = null)
    {
        if (taskNames.Count != benchmarks.Count || (report != null && report.Count != benchmarks.Count))
            throw new ArgumentException($"{taskNames.Count} task names for {benchmarks.Count} benchmarks");
        if (cudaDevice is not null && bindInPlace is null)
            throw new ArgumentException("sessions on the CUDA provider read candidates in place: give bindInPlace");
        TaskNames = taskNames;
        _benchmarks = benchmarks;
        _report = report ?? benchmarks;
        _owner = owner;
        _graph = graphWeights;
        _bind = bind;
        _bindInPlace = bindInPlace;
        _cuda = cudaDevice is not null;
        _cudaDevice = cudaDevice ?? 0;
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
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            var predictor = Bind(backend, candidate);
            double bind = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
            var scores = new double[benchmarks.Count];
            for (int t = 0; t < benchmarks.Count; t++)
            {
                var report = await benchmarks[t].EvaluateAsync(predictor, null, cancellationToken).ConfigureAwait(false);
                scores[t] = report.Score;
            }
            if (purpose == EvaluationPurpose.Search) _bindSeconds[candidate] = bind;
            return scores;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The predictor that reads <paramref name="candidate"/>: bound in place when it can be, else over the host arrays.</summary>
    private ISamPredictor Bind(IComputeBackend backend, IWeightSet candidate)
    {
        _inPlace?.Dispose();
        _inPlace = null;
        _deviceCopy?.Dispose();
        _deviceCopy = null;
        _deviceCopy = InPlaceCandidate.DeviceCopy(backend, candidate, _cuda);
        candidate = _deviceCopy ?? candidate;
        if (_bindInPlace is not null && InPlaceCandidate.Tensors(candidate, _graph, DType.F32, _cuda, _cudaDevice) is { } tensors)
        {
            _inPlace = _bindInPlace(tensors);
            LastBinding = "in place";
            return _inPlace;
        }
        if (_cuda) throw new InvalidOperationException(InPlaceCandidate.WhyNot(candidate, _graph, DType.F32, _cuda, _cudaDevice, "CUDA SAM evaluator"));
        if (_host is null)
        {
            _host = new CandidateHostWeights(_graph, "the SAM graphs");
            _hostPredictor = _bind(_host.Arrays);
        }
        _host.Load(backend, candidate);
        LastBinding = "host arrays";
        return _hostPredictor!;
    }

    /// <inheritdoc/>
    public IReadOnlyList<TaskEvaluationStatistics>? TakeStatistics(IWeightSet candidate) => null;

    /// <inheritdoc/>
    public double? TakeBindSeconds(IWeightSet candidate) => _bindSeconds.TryRemove(candidate, out double s) ? s : null;

    /// <summary>Releases the predictors and the device copy, then the owner.</summary>
    public void Dispose()
    {
        _inPlace?.Dispose();
        _deviceCopy?.Dispose();
        _hostPredictor?.Dispose();
        _owner?.Dispose();
        _gate.Dispose();
    }
}
