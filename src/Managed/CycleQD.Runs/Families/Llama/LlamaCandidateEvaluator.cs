using System.Collections.Concurrent;
using System.Diagnostics;
using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Tensors;

namespace CycleQD.Runs.Families.Llama;

/// <summary>
/// Scores a candidate Llama weight set on one <see cref="IBenchmark"/> per task with the ONNX
/// Runtime generator, over the model's one session (nothing is rebuilt between candidates). The
/// candidate's weights reach the session one of two ways:
/// <list type="bullet">
/// <item>in place: when the candidate says where its tensors live (<see cref="IWeightMemory"/>) in the
/// session's memory (host memory for the CPU provider, the session's GPU for the CUDA provider) and
/// stores every graph weight in the graph's element type, its tensors are bound as they are, with no
/// copy (the CUDA backend's child on the GPU; the CPU backend's float32 sets);</item>
/// <item>through host arrays: otherwise (another storage type, a stand-in responder), the tensors are
/// downloaded into float32 host arrays allocated on first use and bound, pinned, to a float32 graph.</item>
/// </list>
/// The time either takes is measured per candidate (<see cref="IEvaluationStatisticsSource.TakeBindSeconds"/>).
/// A CUDA session has no host-array path (it would copy the whole model to the GPU at every step): a
/// set the backend keeps in host memory (streamed runs' experts and elites) is first copied to the
/// device by the backend, and a candidate it still cannot bind in place is an error naming the tensor.
/// </summary>
/// <remarks>
/// Each benchmark batches its prompts itself (all samples of a round in one generation call), and
/// the tasks of one candidate run concurrently with their generation calls serialised, so harness
/// work of one task overlaps generation for another. The evaluator times the generator's calls, so
/// every task's cost splits into generation and harness time (<see cref="IEvaluationStatisticsSource"/>;
/// harness time excludes waiting for the model). Evaluations are serialised: one session serves them.
/// Owns the model, the host arrays and the generator; not the benchmarks' data.
/// </remarks>
public sealed class LlamaCandidateEvaluator : IRunEvaluator, IEvaluationStatisticsSource, IRetentionEvaluator
{
    private LlamaSequenceScorer? _scorer;

    /// <summary>The report.retention benchmarks on their test split (perplexity ones read the logits through a <see cref="LlamaSequenceScorer"/>).</summary>
    internal IReadOnlyList<IBenchmark> Retention { get; init; } = [];

    /// <summary>CPU threads per operator of the perplexity scorer's session (0: ONNX Runtime's default).</summary>
    internal int ScorerThreads { get; init; }

    /// <summary>The model's generation lanes (CPU sessions decoding side by side).</summary>
    internal int Lanes => _model.Lanes;

    private readonly LlamaModel _model;
    private readonly IReadOnlyList<IBenchmark> _search;
    private readonly IReadOnlyList<IBenchmark> _report;
    private readonly Func<ITextGenerator, IReadOnlyDictionary<string, float[]>, ITextGenerator>? _generatorFor;
    private readonly IReadOnlyList<LlamaWeightSpec> _layout;
    private readonly OnnxElementType _elementType;
    private readonly InferenceDevice _device;
    private readonly int _cudaDevice;
    private CandidateHostWeights? _host;
    private LlamaWeights? _hostWeights;
    private ITextGenerator? _hostGenerator;
    private LlamaWeights? _inPlace;
    private IWeightSet? _deviceCopy;
    private ITextGenerator _generator = null!;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ConcurrentDictionary<IWeightSet, TaskEvaluationStatistics[]> _statistics = new(ReferenceEqualityComparer.Instance);
    private readonly ConcurrentDictionary<IWeightSet, double> _bindSeconds = new(ReferenceEqualityComparer.Instance);

    /// <inheritdoc/>
    public IReadOnlyList<string> TaskNames { get; }

    /// <summary>How the last candidate reached the session: "in place" or "host arrays" (null before the first).</summary>
    public string? LastBinding { get; private set; }

    /// <param name="model">The base model folder opened for generation (its session and tokenizer serve every candidate); owned from here on.</param>
    /// <param name="taskNames">Task names, in score order.</param>
    /// <param name="search">One benchmark per task on its search split, same order.</param>
    /// <param name="report">One benchmark per task on its report split, same order (may be the search ones when the family has no held-out split).</param>
    /// <param name="generatorFor">
    /// Makes the text generator from the model's generator and the candidate host arrays (null: the
    /// model's generator). A stand-in responder (<see cref="WeightKeyedResponder"/>) is plugged in here;
    /// it reads the host arrays, so every candidate then goes through them.
    /// </param>
    public LlamaCandidateEvaluator(LlamaModel model, IReadOnlyList<string> taskNames, IReadOnlyList<IBenchmark> search, IReadOnlyList<IBenchmark> report,
        Func<ITextGenerator, IReadOnlyDictionary<string, float[]>, ITextGenerator>? generatorFor = null)
    {
        if (taskNames.Count != search.Count || taskNames.Count != report.Count)
            throw new ArgumentException($"{taskNames.Count} task names for {search.Count} search and {report.Count} report benchmarks");
        _model = model;
        TaskNames = taskNames;
        _search = search;
        _report = report;
        _generatorFor = generatorFor;
        _layout = LlamaWeightLayout.For(model.Folder.Config);
        _elementType = model.Weights.ElementType;
        _device = model.Session.Device;
        _cudaDevice = model.Session.CudaDevice;
        if (_device == InferenceDevice.Cuda && generatorFor != null)
            throw new ArgumentException("a stand-in responder reads host arrays; it runs with the CPU provider only");
    }

    /// <inheritdoc/>
    public Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken) =>
        EvaluateAsync(backend, candidate, EvaluationPurpose.Search, cancellationToken);

    /// <inheritdoc/>
    public async Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, EvaluationPurpose purpose, CancellationToken cancellationToken)
    {
        var benchmarks = purpose == EvaluationPurpose.Search ? _search : _report;
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            double bind = Bind(backend, candidate);
            // The tasks run side by side and share the one model through a gate: while one task's
            // harness runs code, SQL or shell, another task's prompts are generated.
            using var modelGate = new SemaphoreSlim(1, 1);
            var runs = benchmarks.Select(async b =>
            {
                var timed = new TimedGenerator(_generator, modelGate);
                long start = Stopwatch.GetTimestamp();
                var report = await b.EvaluateAsync(timed, null, cancellationToken).ConfigureAwait(false);
                double total = Stopwatch.GetElapsedTime(start).TotalSeconds;
                return (report.Score, new TaskEvaluationStatistics(timed.Calls, timed.Tokens, timed.Seconds, Math.Max(0, total - timed.Seconds - timed.WaitSeconds)));
            }).ToList();
            var done = await Task.WhenAll(runs).ConfigureAwait(false);
            var scores = done.Select(d => d.Score).ToArray();
            var statistics = done.Select(d => d.Item2).ToArray();
            if (purpose == EvaluationPurpose.Search)
            {
                _statistics[candidate] = statistics;
                _bindSeconds[candidate] = bind;
            }
            return scores;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Hands <paramref name="candidate"/>'s weights to the session (in place when it can) and returns the seconds it took.</summary>
    private double Bind(IComputeBackend backend, IWeightSet candidate)
    {
        long start = Stopwatch.GetTimestamp();
        _inPlace?.Dispose();
        _inPlace = null;
        _deviceCopy?.Dispose();
        _deviceCopy = null;
        bool cuda = _device == InferenceDevice.Cuda;
        _deviceCopy = InPlaceCandidate.DeviceCopy(backend, candidate, cuda);
        candidate = _deviceCopy ?? candidate;
        if (_generatorFor is null && InPlaceCandidate.Tensors(candidate, _layout, StorageOf(_elementType), cuda, _cudaDevice) is { } tensors)
        {
            _inPlace = _device == InferenceDevice.Cuda
                ? LlamaWeights.FromCudaMemory(_model.Folder.Config, tensors, _elementType, _cudaDevice, "candidate")
                : LlamaWeights.FromHostMemory(_layout, tensors, _elementType, "candidate");
            _generator = _model.CreateGenerator(_inPlace);
            _scorer?.Rebind(_inPlace);
            LastBinding = "in place";
        }
        else
        {
            if (_device == InferenceDevice.Cuda || _elementType != OnnxElementType.Float)
                throw new InvalidOperationException(InPlaceCandidate.WhyNot(candidate, _layout, StorageOf(_elementType), cuda, _cudaDevice, $"{(cuda ? "CUDA" : "CPU")} evaluator's {_elementType} graph"));
            if (_host is null)
            {
                _host = new CandidateHostWeights(_layout, "the model's graph");
                // Float graph: FromArrays pins the arrays instead of copying them, so writing into them
                // rebinds the candidate for the next run.
                _hostWeights = LlamaWeights.FromArrays(_model.Folder.Config, _host.Arrays, "candidate", OnnxElementType.Float);
                var modelGenerator = _model.CreateGenerator(_hostWeights);
                _hostGenerator = _generatorFor is null ? modelGenerator : _generatorFor(modelGenerator, _host.Arrays);
            }
            _host.Load(backend, candidate);
            _generator = _hostGenerator!;
            _scorer?.Rebind(_hostWeights!);
            LastBinding = "host arrays";
        }
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static DType StorageOf(OnnxElementType t) => t switch
    {
        OnnxElementType.Float16 => DType.F16,
        OnnxElementType.BFloat16 => DType.BF16,
        _ => DType.F32,
    };

    /// <inheritdoc/>
    async Task<double[]> IRetentionEvaluator.EvaluateRetentionAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken)
    {
        if (Retention.Count == 0) return [];
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            Bind(backend, candidate);
            var scores = new double[Retention.Count];
            for (int i = 0; i < scores.Length; i++)
            {
                if (Retention[i] is PerplexityBenchmark perplexity)
                {
                    // Opened on first use (full-window logits); it reads the candidate bound last, and Bind rebinds it after.
                    _scorer ??= _model.CreateScorer(_inPlace ?? _hostWeights, ScorerThreads);
                    scores[i] = (await perplexity.ScoreAsync(_scorer, _model.Tokenizer, cancellationToken).ConfigureAwait(false)).Score;
                }
                else
                {
                    scores[i] = (await Retention[i].EvaluateAsync(_generator, null, cancellationToken).ConfigureAwait(false)).Score;
                }
            }
            return scores;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc/>
    public IReadOnlyList<TaskEvaluationStatistics>? TakeStatistics(IWeightSet candidate) =>
        _statistics.TryRemove(candidate, out var s) ? s : null;

    /// <inheritdoc/>
    public double? TakeBindSeconds(IWeightSet candidate) => _bindSeconds.TryRemove(candidate, out double s) ? s : null;

    /// <summary>Releases the bound weights, the session and the model.</summary>
    public void Dispose()
    {
        (_hostGenerator as IDisposable)?.Dispose();
        _scorer?.Dispose();
        _inPlace?.Dispose();
        _deviceCopy?.Dispose();
        _hostWeights?.Dispose();
        _model.Dispose();
        _gate.Dispose();
    }

    /// <summary>
    /// Counts the prompts and generated tokens that pass through, and the time spent generating; one
    /// call at a time through <paramref name="gate"/> (the model's session serves every task), the
    /// time spent waiting for it counted apart.
    /// </summary>
    private sealed class TimedGenerator(ITextGenerator inner, SemaphoreSlim gate) : ITextGenerator
    {
        public int Calls { get; private set; }
        public long Tokens { get; private set; }
        public double Seconds { get; private set; }
        public double WaitSeconds { get; private set; }

        public async Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, CancellationToken cancellationToken = default)
        {
            long asked = Stopwatch.GetTimestamp();
            await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                long start = Stopwatch.GetTimestamp();
                WaitSeconds += Stopwatch.GetElapsedTime(asked, start).TotalSeconds;
                var results = await inner.GenerateAsync(requests, cancellationToken).ConfigureAwait(false);
                Seconds += Stopwatch.GetElapsedTime(start).TotalSeconds;
                Calls += requests.Count;
                foreach (var r in results) Tokens += r.TokenIds.Count;
                return results;
            }
            finally
            {
                gate.Release();
            }
        }
    }
}
