using BenchmarkDotNet.Attributes;
using CycleQD.Cpu.Linalg;

namespace CycleQD.Benchmarks;

/// <summary>Full thin SVD (LAPACKE sgesdd) vs randomized truncated SVD (2 power iterations, 10 oversampling) of fp32 task-vector-sized matrices.</summary>
[Config(typeof(ShortJobConfig))]
public class SvdBenchmarks
{
    private float[] _a = null!;

    [Params("1024x1024", "4096x1024")]
    public string Shape { get; set; } = "";

    [Params(64, 256)]
    public int Rank { get; set; }

    private int M => int.Parse(Shape.Split('x')[0]);
    private int N => int.Parse(Shape.Split('x')[1]);

    [GlobalSetup]
    public void Setup()
    {
        var rng = new System.Random(1);
        _a = new float[M * N];
        // A decaying spectrum, like a task vector: sum of rank-one terms with weights 0.97^i plus noise.
        for (int i = 0; i < _a.Length; i++) _a[i] = (float)(1e-3 * (rng.NextDouble() - 0.5));
        var u = new float[M];
        var v = new float[N];
        for (int r = 0; r < 64; r++)
        {
            for (int i = 0; i < M; i++) u[i] = (float)(rng.NextDouble() - 0.5);
            for (int j = 0; j < N; j++) v[j] = (float)(rng.NextDouble() - 0.5);
            float w = (float)Math.Pow(0.97, r);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) _a[i * N + j] += w * u[i] * v[j];
        }
    }

    [Benchmark(Baseline = true, Description = "full (sgesdd)")]
    public float Full() => Svd.Full(_a, M, N, Rank).S[0];

    [Benchmark(Description = "randomized top-k")]
    public float Randomized() => Svd.Randomized(_a, M, N, Rank, 10, 2, 1, 0, 0).S[0];
}
