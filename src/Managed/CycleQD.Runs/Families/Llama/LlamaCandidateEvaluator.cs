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
/// Runtime generator. The candidate's tensors are downloaded from the compute backend into
/// float32 host arrays allocated once (one per graph weight, the model's size in all); those arrays
/// are bound, pinned, to the model's one session as a <see cref="LlamaWeights"/>, so each
/// evaluation only overwrites them and nothing is rebuilt or reallocated between candidates.
/// </summary>
/// <remarks>
/// Each benchmark batches its prompts itself (all samples of a round in one generation call), and
/// the tasks of one candidate run concurrently with their generation calls serialised, so harness
/// work of one task overlaps generation for another. The evaluator times the generator's calls, so
/// every task's cost splits into generation and harness time (<see cref="IEvaluationStatisticsSource"/>;
/// harness time excludes waiting for the model). Evaluations are serialised: the host arrays are
/// shared, and ONNX Runtime already uses every core for one batch.
/// Owns the model, the host arrays and the generator; not the benchmarks' data.
/// </remarks>
public sealed class LlamaCandidateEvaluator : IRunEvaluator, IEvaluationStatisticsSource, IRetentionEvaluator
{
    private LlamaSequenceScorer? _scorer;

    /// <summary>The report.retention benchmarks on their test split (perplexity ones read the logits through a <see cref="LlamaSequenceScorer"/>).</summary>
    internal IReadOnlyList<IBenchmark> Retention { get; init; } = [];

    /// <summary>CPU threads per operator of the perplexity scorer's session (0: ONNX Runtime's default).</summary>
    internal int ScorerThreads { get; init; }

    private readonly LlamaModel _model;
    private readonly IReadOnlyList<IBenchmark> _search;
    private readonly IReadOnlyList<IBenchmark> _report;
    private readonly CandidateHostWeights _host;
    private readonly LlamaWeights _weights;
    private readonly ITextGenerator _generator;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ConcurrentDictionary<IWeightSet, TaskEvaluationStatistics[]> _statistics = new(ReferenceEqualityComparer.Instance);

    /// <inheritdoc/>
    public IReadOnlyList<string> TaskNames { get; }

    /// <param name="model">The base model folder opened for generation (its session and tokenizer serve every candidate); owned from here on.</param>
    /// <param name="taskNames">Task names, in score order.</param>
    /// <param name="search">One benchmark per task on its search split, same order.</param>
    /// <param name="report">One benchmark per task on its report split, same order (may be the search ones when the family has no held-out split).</param>
    /// <param name="generatorFor">
    /// Makes the text generator from the model's generator and the candidate host arrays (null: the
    /// model's generator). A stand-in responder (<see cref="WeightKeyedResponder"/>) is plugged in here.
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
        _host = new CandidateHostWeights(LlamaWeightLayout.For(model.Folder.Config), "the model's graph");
        // Float graph: FromArrays pins the arrays instead of copying them, so writing into them
        // rebinds the candidate for the next run.
        _weights = LlamaWeights.FromArrays(model.Folder.Config, _host.Arrays, "candidate", OnnxElementType.Float);
        var modelGenerator = model.CreateGenerator(_weights);
        _generator = generatorFor is null ? modelGenerator : generatorFor(modelGenerator, _host.Arrays);
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
            _host.Load(backend, candidate);
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
            if (purpose == EvaluationPurpose.Search) _statistics[candidate] = statistics;
            return scores;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc/>
    async Task<double[]> IRetentionEvaluator.EvaluateRetentionAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken)
    {
        if (Retention.Count == 0) return [];
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            _host.Load(backend, candidate);
            var scores = new double[Retention.Count];
            for (int i = 0; i < scores.Length; i++)
            {
                if (Retention[i] is PerplexityBenchmark perplexity)
                {
                    // Opened on first use: the scorer's session (full-window logits) reads the same bound host arrays.
                    _scorer ??= _model.CreateScorer(_weights, ScorerThreads);
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

    /// <summary>Releases the bound weights, the session and the model.</summary>
    public void Dispose()
    {
        (_generator as IDisposable)?.Dispose();
        _scorer?.Dispose();
        _weights.Dispose();
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
