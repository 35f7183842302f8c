using BenchmarkDotNet.Attributes;
using CycleQD.Core.Compute;
using CycleQD.Cpu;
using CycleQD.Tensors;

namespace CycleQD.Benchmarks;

/// <summary>
/// The fused two-parent merge on 256 MiB models (16 tensors of 4096 × 2048 in bf16, or 8 in fp32)
/// against a plain copy of one model's bytes in the same run. The merge moves 4 × 256 MiB (three
/// models read, one written), the copy 2 × 256 MiB; docs/perf.md turns the times into GB/s.
/// "new child" allocates the child each time (first-touch page faults included); "reused child"
/// writes into one allocated in setup, as the engine does.
/// </summary>
[Config(typeof(ShortJobConfig))]
public class MergeBenchmarks
{
    private const int Rows = 4096, Cols = 2048;
    private CpuComputeBackend _backend = null!;
    private IWeightSet _base = null!, _p1 = null!, _p2 = null!, _child = null!;
    private byte[][] _copySource = null!, _copyDestination = null!;

    [Params(DType.BF16, DType.F32)]
    public DType Storage { get; set; }

    /// <summary>Bytes of one model.</summary>
    public const long ModelBytes = 256L << 20;

    [GlobalSetup]
    public void Setup()
    {
        _backend = new CpuComputeBackend();
        int tensors = (int)(ModelBytes / ((long)Rows * Cols * DTypes.SizeOf(Storage)));
        _base = _backend.Upload(Model(tensors, 1));
        _p1 = _backend.Upload(Model(tensors, 2));
        _p2 = _backend.Upload(Model(tensors, 3));
        _child = _backend.Merge(_base, [_p1, _p2], [1f, 1f]);
        int bytesPerTensor = Rows * Cols * DTypes.SizeOf(Storage);
        _copySource = Enumerable.Range(0, tensors).Select(i => { var b = new byte[bytesPerTensor]; new System.Random(i).NextBytes(b); return b; }).ToArray();
        _copyDestination = Enumerable.Range(0, tensors).Select(_ => new byte[bytesPerTensor]).ToArray();
    }

    private InMemoryTensorSource Model(int tensors, int seed)
    {
        var rng = new System.Random(seed);
        var src = new InMemoryTensorSource();
        var values = new float[Rows * Cols];
        for (int t = 0; t < tensors; t++)
        {
            for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() - 0.5);
            src.Add($"layers.{t}.weight", Storage, [Rows, Cols], values);
        }
        return src;
    }

    [Benchmark(Description = "merge base + 2 parents → reused child")]
    public void MergeInto() => _backend.MergeInto(_child, _base, [_p1, _p2], [1.01f, 0.98f]);

    [Benchmark(Description = "merge base + 2 parents → new child")]
    public void MergeNew()
    {
        using var child = _backend.Merge(_base, [_p1, _p2], [1.01f, 0.98f]);
    }

    [Benchmark(Baseline = true, Description = "copy one model's bytes")]
    public void Copy()
    {
        // Same parallel split as the kernels, so both use every core.
        Parallel.For(0, _copySource.Length, i => _copySource[i].AsSpan().CopyTo(_copyDestination[i]));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _base.Dispose(); _p1.Dispose(); _p2.Dispose(); _child.Dispose();
        _backend.Dispose();
    }
}
