using BenchmarkDotNet.Attributes;
using CycleQD.Cpu.Merging;

namespace CycleQD.Benchmarks;

/// <summary>
/// The one-shot merges of <c>cycleqd merge</c> on one fp32 tensor of 4096 × 4096 (64 MiB) with a
/// base and three experts: each method reads four tensors and writes one (5 × 64 MiB = 0.336 GB
/// moved; TIES reads each expert three times more to find its threshold). The copy of one tensor
/// (2 × 64 MiB) in the same run gives the machine's bandwidth; docs/perf.md turns times into GB/s.
/// Single-threaded, as the merge verb runs.
/// </summary>
[Config(typeof(ShortJobConfig))]
public class OneShotMergeBenchmarks
{
    private const int N = 4096 * 4096;
    private float[] _base = null!, _output = null!;
    private ReadOnlyMemory<float>[] _experts = null!;
    private readonly float[] _weights = [1f, 1f, 1f];

    [GlobalSetup]
    public void Setup()
    {
        var rng = new System.Random(1);
        _base = new float[N];
        for (int j = 0; j < N; j++) _base[j] = (float)(rng.NextDouble() - 0.5);
        _experts = Enumerable.Range(0, 3).Select(_ =>
        {
            var e = new float[N];
            for (int j = 0; j < N; j++) e[j] = _base[j] + (float)(0.02 * (rng.NextDouble() - 0.5));
            return (ReadOnlyMemory<float>)e;
        }).ToArray();
        _output = new float[N];
    }

    [Benchmark(Description = "copy one tensor")]
    public void Copy() => _base.AsSpan().CopyTo(_output);

    [Benchmark(Description = "task_arithmetic, 3 experts")]
    public void TaskArithmetic() => TaskVectorMerges.TaskArithmetic(_base, _experts, _weights, 0.7f, false, _output);

    [Benchmark(Description = "ties (per tensor, density 0.2), 3 experts")]
    public void Ties() => TaskVectorMerges.Ties(_base, _experts, _weights, [0.2f, 0.2f, 0.2f], 1f, true, false, _output);

    [Benchmark(Description = "trim threshold of one expert (two passes)")]
    public TrimCut Threshold() => TaskVectorMerges.MagnitudeTrim(_base, _experts[0].Span, 0.2);

    [Benchmark(Description = "dare_ties (density 0.5), 3 experts")]
    public void DareTies() => TaskVectorMerges.Dare(_base, _experts, _weights, [0.5f, 0.5f, 0.5f], new DareOptions(7, 0, SignConsensus: true), _output);
}
