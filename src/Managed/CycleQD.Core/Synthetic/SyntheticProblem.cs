using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using CycleQD.Core.Random;
using CycleQD.Tensors;

namespace CycleQD.Core.Synthetic;

/// <summary>Shape of the synthetic test problem.</summary>
/// <param name="Layers">Number of (weight, bias) layer pairs.</param>
/// <param name="Rows">Rows of each weight matrix.</param>
/// <param name="Cols">Columns of each weight matrix (and length of each bias).</param>
/// <param name="DType">Storage type of every tensor.</param>
/// <param name="Seed">Seed of the generated base, targets and experts (independent of the run seed).</param>
/// <param name="ExpertStrength">a: expert k = base + a·Δ_k (+ small noise); 0 &lt; a.</param>
/// <param name="ExpertScore">Score an expert gets on its own task (sets each task's length scale), in (0, 1).</param>
public sealed record SyntheticProblemOptions(int Layers = 4, int Rows = 64, int Cols = 64, DType DType = DType.BF16, ulong Seed = 7,
    double ExpertStrength = 0.7, double ExpertScore = 0.7)
{
    /// <summary>Largest problem accepted, in parameters (weights and biases of all layers).</summary>
    public const long MaxParameters = 1L << 27;

    /// <summary>Throws <see cref="ConfigurationException"/> on unusable values.</summary>
    public void Validate()
    {
        if (Layers < 1 || Rows < 1 || Cols < 1) throw new ConfigurationException($"model.synthetic: layers, rows and cols must be ≥ 1 (got {Layers}, {Rows}, {Cols})");
        double parameters = (double)Layers * ((double)Rows * Cols + Cols);
        if (parameters > MaxParameters)
            throw new ConfigurationException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"model.synthetic: layers {Layers} × (rows {Rows} × cols {Cols} + {Cols}) = {parameters:G4} parameters, too many: at most {MaxParameters:N0} (the problem keeps one float64 target per task in memory)"));
        if (!DTypes.IsWeightType(DType)) throw new ConfigurationException($"model.synthetic.dtype: {DType} is not F32, F16 or BF16");
        if (!(ExpertStrength > 0)) throw new ConfigurationException($"model.synthetic.expert_strength = {ExpertStrength}, must be > 0");
        if (!(ExpertScore > 0 && ExpertScore < 1)) throw new ConfigurationException($"model.synthetic.expert_score = {ExpertScore}, must be in (0, 1)");
    }
}

/// <summary>
/// A test problem, not a model of anything: a small generated "model" (Layers × (Rows × Cols weight,
/// Cols bias)) and one hidden target per task, T_k = base + Δ_k with Δ_k = S + U_k (a part shared by
/// all tasks plus a task-specific part, Gaussian). Expert k = base + a·Δ_k. A candidate θ scores
/// exp(−‖θ − T_k‖² / (2ℓ_k²)) on task k, ℓ_k set so expert k scores <see cref="SyntheticProblemOptions.ExpertScore"/>
/// on its own task. Merging experts moves a child between targets (diversity); scaling task
/// vectors up (SVD mutation) moves it towards them (quality). Scores are computed in float64 from
/// the stored weights, so they are deterministic.
/// </summary>
public sealed class SyntheticProblem : ICandidateEvaluator
{
    private readonly SyntheticProblemOptions _o;
    private readonly List<TensorSpec> _specs = [];
    private readonly float[][] _base;
    private readonly double[][][] _targets;
    private readonly double[] _twoLengthSq;

    /// <inheritdoc/>
    public IReadOnlyList<string> TaskNames { get; }

    /// <param name="tasks">Task names (one target and one expert each).</param>
    /// <param name="options">Problem shape and seed.</param>
    public SyntheticProblem(IReadOnlyList<string> tasks, SyntheticProblemOptions options)
    {
        options.Validate();
        if (tasks.Count == 0) throw new ConfigurationException("tasks: at least one task is required");
        _o = options;
        TaskNames = tasks;
        for (int l = 0; l < options.Layers; l++)
        {
            _specs.Add(new TensorSpec($"layers.{l}.weight", options.DType, [options.Rows, options.Cols]));
            _specs.Add(new TensorSpec($"layers.{l}.bias", options.DType, [options.Cols]));
        }
        _base = _specs.Select((s, i) => Draw(i, 0, s.ElementCount, 0.02, 0)).Select(Quantise).ToArray();
        var shared = _specs.Select((s, i) => Draw(i, 1, s.ElementCount, 0.01, 0)).ToArray();
        _targets = new double[tasks.Count][][];
        _twoLengthSq = new double[tasks.Count];
        double a = options.ExpertStrength;
        for (int k = 0; k < tasks.Count; k++)
        {
            _targets[k] = new double[_specs.Count][];
            double deltaSq = 0;
            for (int i = 0; i < _specs.Count; i++)
            {
                var unique = Draw(i, 2 + (uint)k, _specs[i].ElementCount, 0.01, 0);
                var t = new double[unique.Length];
                for (int e = 0; e < t.Length; e++)
                {
                    double d = shared[i][e] + unique[e];
                    t[e] = _base[i][e] + d;
                    deltaSq += d * d;
                }
                _targets[k][i] = t;
            }
            // Expert k sits at distance ≈ (1 − a)·‖Δ_k‖ from its target.
            _twoLengthSq[k] = (1 - a) * (1 - a) * deltaSq / Math.Log(1 / options.ExpertScore);
        }
    }

    /// <summary>Tensors of every model of the problem.</summary>
    public IReadOnlyList<TensorSpec> Tensors => _specs;

    /// <summary>The base model.</summary>
    public InMemoryTensorSource BaseModel()
    {
        var src = new InMemoryTensorSource();
        for (int i = 0; i < _specs.Count; i++) src.Add(_specs[i].Name, _specs[i].DType, _specs[i].Shape, _base[i]);
        return src;
    }

    /// <summary>The expert of task <paramref name="task"/>: base + a·Δ_k plus noise of 10% of Δ's scale.</summary>
    public InMemoryTensorSource Expert(int task)
    {
        var src = new InMemoryTensorSource();
        for (int i = 0; i < _specs.Count; i++)
        {
            var noise = Draw(i, 1000 + (uint)task, _specs[i].ElementCount, 0.001, 0);
            var v = new float[noise.Length];
            for (int e = 0; e < v.Length; e++)
                v[e] = (float)(_base[i][e] + _o.ExpertStrength * (_targets[task][i][e] - _base[i][e]) + noise[e]);
            src.Add(_specs[i].Name, _specs[i].DType, _specs[i].Shape, v);
        }
        return src;
    }

    /// <inheritdoc/>
    public Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var t = candidate.Tensors;
        if (t.Count != _specs.Count) throw new ArgumentException($"candidate has {t.Count} tensors, the synthetic problem has {_specs.Count}");
        var distSq = new double[TaskNames.Count];
        for (int i = 0; i < t.Count; i++)
        {
            var bytes = new byte[t[i].ByteLength];
            backend.Download(candidate, i, bytes);
            // A NaN distance would become a NaN score; the engine handles this exception for a child instead.
            var bad = NonFiniteScan.Count(bytes, t[i].DType);
            if (!bad.IsFinite) throw new NonFiniteWeightsException(t[i].Name, $"{bad} in the candidate");
            var v = new float[t[i].ElementCount];
            DTypeConversion.ToSingle(bytes, t[i].DType, v);
            for (int k = 0; k < distSq.Length; k++)
            {
                var target = _targets[k][i];
                double s = 0;
                for (int e = 0; e < v.Length; e++) { double d = v[e] - target[e]; s += d * d; }
                distSq[k] += s;
            }
        }
        var scores = new double[distSq.Length];
        for (int k = 0; k < scores.Length; k++) scores[k] = Math.Exp(-distSq[k] / _twoLengthSq[k]);
        return Task.FromResult(scores);
    }

    private float[] Quantise(float[] v)
    {
        var bytes = new byte[v.Length * DTypes.SizeOf(_o.DType)];
        DTypeConversion.FromSingle(v, _o.DType, bytes);
        DTypeConversion.ToSingle(bytes, _o.DType, v);
        return v;
    }

    private float[] Draw(int tensor, uint role, long count, double scale, uint purpose)
    {
        var v = new float[count];
        for (long e = 0; e < count; e++) v[e] = (float)(scale * Philox4x32.Normal(_o.Seed, (uint)tensor, role, purpose, (ulong)e));
        return v;
    }
}
