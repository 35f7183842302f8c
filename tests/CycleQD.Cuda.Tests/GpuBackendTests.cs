using CycleQD.Core.Compute;
using CycleQD.Core.Synthetic;
using CycleQD.Cpu;
using CycleQD.Cuda.Backend;
using CycleQD.Cuda.Kernels;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Tests;

/// <summary>
/// <see cref="CudaComputeBackend"/> against its twin <see cref="CpuComputeBackend"/> on the same
/// inputs. Skipped, with the driver's reason, where there is no GPU.
/// </summary>
public sealed class GpuBackendTests : IDisposable
{
    private readonly CudaComputeBackend _gpu;
    private readonly CpuComputeBackend _cpu = new();

    public GpuBackendTests()
    {
        var status = CudaDeviceProbe.Probe();
        if (!status.Available) Assert.Skip("needs a GPU: " + status.Reason);
        if (PtxCatalog.List().Count == 0) Assert.Skip("no PTX embedded in this build (no nvcc at build time)");
        _gpu = CudaComputeBackend.Create();
    }

    public void Dispose()
    {
        _gpu?.Dispose();
        _cpu.Dispose();
    }

    private static InMemoryTensorSource Model(DType dtype, int seed, int rows, int cols, Func<int, int, double>? structure = null)
    {
        var rnd = new Random(seed);
        var src = new InMemoryTensorSource();
        for (int l = 0; l < 3; l++)
        {
            var w = new float[rows * cols];
            for (int i = 0; i < w.Length; i++) w[i] = (float)((structure?.Invoke(i / cols, i % cols) ?? 0) + (rnd.NextDouble() * 2 - 1));
            src.Add($"layers.{l}.weight", dtype, [rows, cols], w);
            var b = new float[cols + l];
            for (int i = 0; i < b.Length; i++) b[i] = (float)(rnd.NextDouble() * 2 - 1);
            src.Add($"layers.{l}.bias", dtype, [cols + l], b);
        }
        return src;
    }

    private static float[] Floats(IComputeBackend backend, IWeightSet set, int index)
    {
        var spec = set.Tensors[index];
        var bytes = new byte[spec.ByteLength];
        backend.Download(set, index, bytes);
        var f = new float[spec.ElementCount];
        DTypeConversion.ToSingle(bytes, spec.DType, f);
        return f;
    }

    private static double RelativeError(float[] actual, float[] expected)
    {
        double num = 0, den = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            num += (actual[i] - (double)expected[i]) * (actual[i] - (double)expected[i]);
            den += (double)expected[i] * expected[i];
        }
        return Math.Sqrt(num / Math.Max(den, 1e-300));
    }

    [Fact]
    public void UploadDownload_RoundTripsBytes()
    {
        var src = Model(DType.BF16, 1, 33, 17);
        using var set = _gpu.Upload(src);
        for (int i = 0; i < set.Tensors.Count; i++)
        {
            var back = new byte[set.Tensors[i].ByteLength];
            Array.Fill(back, (byte)0xFF);
            _gpu.Download(set, i, back);
            Assert.Equal(src.GetBytes(set.Tensors[i].Name).ToArray(), back);
        }
    }

    [Theory]
    [InlineData(DType.F32, 2)]
    [InlineData(DType.BF16, 2)]
    [InlineData(DType.F16, 3)]
    [InlineData(DType.BF16, 8)]
    public void Merge_MatchesCpuBackend_WithinOneStorageUlp(DType dtype, int parents)
    {
        var baseSrc = Model(dtype, 10, 37, 29);
        var parentSrc = Enumerable.Range(0, parents).Select(p => Model(dtype, 20 + p, 37, 29)).ToArray();
        float[] w = Enumerable.Range(0, parents).Select(p => 0.25f + 0.5f * p).ToArray();
        using var cb = _cpu.Upload(baseSrc);
        using var gb = _gpu.Upload(baseSrc);
        var cp = parentSrc.Select(_cpu.Upload).ToArray();
        var gp = parentSrc.Select(_gpu.Upload).ToArray();
        try
        {
            using var cc = _cpu.Merge(cb, cp, w);
            using var gc = _gpu.Merge(gb, gp, w);
            // A destination holding other values: MergeInto must overwrite every element.
            using var gi = _gpu.Upload(Model(dtype, 99, 37, 29));
            _gpu.MergeInto(gi, gb, gp, w);
            double ulp = Math.Pow(2, dtype switch { DType.F32 => -23, DType.F16 => -10, _ => -7 });
            for (int t = 0; t < cc.Tensors.Count; t++)
            {
                var expected = Floats(_cpu, cc, t);
                foreach (var actual in new[] { Floats(_gpu, gc, t), Floats(_gpu, gi, t) })
                    for (int i = 0; i < expected.Length; i++)
                        Assert.True(Math.Abs(actual[i] - expected[i]) <= ulp * Math.Max(Math.Abs(expected[i]), 1e-3) + 1e-7,
                            $"{cc.Tensors[t].Name}[{i}]: cuda {actual[i]}, cpu {expected[i]}");
            }
        }
        finally
        {
            foreach (var s in cp.Concat(gp)) s.Dispose();
        }
    }

    /// <summary>
    /// A weight set of mixed shapes and storage types merged with small tensors grouped (one launch per storage type)
    /// and with every tensor alone: the two children are identical byte for byte, both written over poisoned destinations.
    /// </summary>
    [Fact]
    public void MergeInto_GroupedSmallTensors_EqualsPerTensorMerge_BitForBit()
    {
        (string Name, DType DType, long[] Shape)[] layout =
        [
            ("a", DType.BF16, [37, 29]), ("b", DType.F32, [4099]), ("c", DType.F16, [64, 64]), ("d", DType.BF16, [1]),
            ("e", DType.BF16, [300, 257]), ("f", DType.F32, [7]), ("g", DType.F16, [3, 5]), ("h", DType.F32, [250, 260]),
        ];
        InMemoryTensorSource Source(int seed)
        {
            var rnd = new Random(seed);
            var src = new InMemoryTensorSource();
            foreach (var (name, dtype, shape) in layout)
                src.Add(name, dtype, shape, Enumerable.Range(0, (int)shape.Aggregate(1L, (x, y) => x * y)).Select(_ => (float)(rnd.NextDouble() * 2 - 1)).ToArray());
            return src;
        }
        InMemoryTensorSource Poison()
        {
            var src = new InMemoryTensorSource();
            foreach (var (name, dtype, shape) in layout)
            {
                var spec = new TensorSpec(name, dtype, shape);
                var bytes = new byte[spec.ByteLength];
                Array.Fill(bytes, (byte)0xFF);
                src.Add(spec, bytes);
            }
            return src;
        }
        const long Limit = 50_000; // e (77100) and h (65000) stay single
        var plan = MergeGroupPlan.Create(layout.Select(l => (l.Shape.Aggregate(1L, (x, y) => x * y), l.DType)).ToArray(), Limit);
        Assert.Equal([4, 7], plan.Single);
        Assert.Equal(3, plan.Groups.Count);
        using var b = _gpu.Upload(Source(1));
        var ps = Enumerable.Range(0, 3).Select(p => _gpu.Upload(Source(2 + p))).ToArray();
        try
        {
            float[] w = [0.5f, 0.3f, 0.9f];
            using var grouped = _gpu.Upload(Poison());
            using var single = _gpu.Upload(Poison());
            _gpu.GroupedMergeMaxElements = Limit;
            _gpu.MergeInto(grouped, b, ps, w);
            _gpu.GroupedMergeMaxElements = 0;
            _gpu.MergeInto(single, b, ps, w);
            for (int t = 0; t < layout.Length; t++)
            {
                var g = new byte[grouped.Tensors[t].ByteLength];
                var s = new byte[g.Length];
                _gpu.Download(grouped, t, g);
                _gpu.Download(single, t, s);
                Assert.True(g.AsSpan().SequenceEqual(s), $"tensor {layout[t].Name}: grouped and per-tensor merges differ");
                Assert.DoesNotContain(Floats(_gpu, grouped, t), float.IsNaN);
            }
        }
        finally
        {
            foreach (var p in ps) p.Dispose();
        }
    }

    /// <summary>The engine's awaits resume on thread-pool threads; every call must bind the context itself.</summary>
    [Fact]
    public void Calls_FromAnotherThread_Work()
    {
        var src = Model(DType.BF16, 2, 16, 8);
        using var b = _gpu.Upload(src);
        Exception? failure = null;
        var t = new Thread(() =>
        {
            try
            {
                using var child = _gpu.Merge(b, [b], [1f]);
                Assert.Equal(Floats(_gpu, b, 0), Floats(_gpu, child, 0));
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        t.Start();
        t.Join();
        Assert.Null(failure);
    }

    [Fact]
    public void TaskVector_MatchesCpuBackend()
    {
        var a = Model(DType.BF16, 3, 40, 24);
        var b = Model(DType.BF16, 4, 40, 24);
        using var ca = _cpu.Upload(a);
        using var cb = _cpu.Upload(b);
        using var ga = _gpu.Upload(a);
        using var gb = _gpu.Upload(b);
        using var ct = _cpu.TaskVector(ca, cb);
        using var gt = _gpu.TaskVector(ga, gb);
        for (int t = 0; t < ct.Tensors.Count; t++)
        {
            Assert.Equal(DType.F32, gt.Tensors[t].DType);
            Assert.True(RelativeError(Floats(_gpu, gt, t), Floats(_cpu, ct, t)) < 1e-6);
        }
    }

    /// <summary>
    /// SVD mutation of the same child on both backends: the change child' − child agrees to 1e-3
    /// (full SVD) or 1e-2 (randomized, rank 8, on task vectors with a rank-8 structure: the two
    /// backends use different random sketches).
    /// </summary>
    [Theory]
    [InlineData(SvdMethod.Full, 0, 1e-3)]
    [InlineData(SvdMethod.Randomized, 8, 1e-2)]
    public void MutateSvd_MatchesCpuBackend(SvdMethod method, int rank, double tolerance)
    {
        const int rows = 96, cols = 64;
        var basis = new Random(5);
        var u = Enumerable.Range(0, 8).Select(_ => Enumerable.Range(0, rows).Select(_ => basis.NextDouble() - 0.5).ToArray()).ToArray();
        var v = Enumerable.Range(0, 8).Select(_ => Enumerable.Range(0, cols).Select(_ => basis.NextDouble() - 0.5).ToArray()).ToArray();
        var baseSrc = Model(DType.F32, 6, rows, cols);
        // child = base-like noise + a strong rank-8 part, so the top components are well separated.
        var childSrc = Model(DType.F32, 6, rows, cols, (r, c) => Enumerable.Range(0, 8).Sum(j => (40.0 / (j + 1)) * u[j][r] * v[j][c]));
        var options = new MutationOptions(MutationKind.Svd, SvdScaleMax: 0.3, SvdRank: rank, SvdMethod: method);
        using var cb = _cpu.Upload(baseSrc);
        using var gb = _gpu.Upload(baseSrc);
        using var cc = _cpu.Upload(childSrc);
        using var gc = _gpu.Upload(childSrc);
        _cpu.MutateSvd(cc, cb, options, seed: 1234, generation: 7);
        _gpu.MutateSvd(gc, gb, options, seed: 1234, generation: 7);
        for (int t = 0; t < cc.Tensors.Count; t++)
        {
            var before = new float[cc.Tensors[t].ElementCount];
            DTypeConversion.ToSingle(childSrc.GetBytes(cc.Tensors[t].Name), DType.F32, before);
            var cpu = Floats(_cpu, cc, t);
            var gpu = Floats(_gpu, gc, t);
            if (cc.Tensors[t].Shape.Length == 1)
            {
                Assert.Equal(before, gpu); // 1-D tensors are not mutated
                continue;
            }
            var dCpu = cpu.Select((x, i) => x - before[i]).ToArray();
            var dGpu = gpu.Select((x, i) => x - before[i]).ToArray();
            Assert.Contains(dCpu, x => x != 0);
            double err = RelativeError(dGpu, dCpu);
            Assert.True(err < tolerance, $"{cc.Tensors[t].Name}: relative difference of the mutation {err}");
        }
    }

    /// <summary>
    /// Expert-basis SVD mutation with the same host factors on both backends (bf16 and f32 storage): the change
    /// child' − child agrees to float32 GEMM rounding, which needs bit-identical r draws (a wrong r_j moves a whole
    /// rank-one component), and norm/1-D tensors stay as they were.
    /// </summary>
    [Theory]
    [InlineData(DType.F32, 0, 1e-4)]
    [InlineData(DType.F32, 5, 1e-4)]
    [InlineData(DType.BF16, 0, 2e-2)]
    public void MutateSvdExpertBasis_MatchesCpuBackend(DType dtype, int rank, double tolerance)
    {
        const int rows = 96, cols = 64;
        var baseSrc = Model(dtype, 6, rows, cols);
        var expertSrc = Model(dtype, 7, rows, cols);
        var childSrc = Model(dtype, 8, rows, cols);
        var options = new MutationOptions(MutationKind.Svd, SvdScaleMax: 0.3, SvdRank: rank, Basis: MutationBasis.Expert);
        using var cb = _cpu.Upload(baseSrc);
        using var ce = _cpu.Upload(expertSrc);
        using var gb = _gpu.Upload(baseSrc);
        using var cc = _cpu.Upload(childSrc);
        using var gc = _gpu.Upload(childSrc);
        var basis = CycleQD.Cpu.Linalg.ExpertSvdFactorization.Compute("t", _cpu, ce, cb, options);
        _cpu.MutateSvdExpertBasis(cc, cb, basis, options, seed: 1234, generation: 7);
        _gpu.MutateSvdExpertBasis(gc, gb, basis, options, seed: 1234, generation: 7);
        using var unmutated = _cpu.Upload(childSrc);
        for (int t = 0; t < cc.Tensors.Count; t++)
        {
            var before = Floats(_cpu, unmutated, t);
            var cpu = Floats(_cpu, cc, t);
            var gpu = Floats(_gpu, gc, t);
            if (cc.Tensors[t].Shape.Length == 1)
            {
                Assert.Equal(before, gpu);
                continue;
            }
            var dCpu = cpu.Select((x, i) => x - before[i]).ToArray();
            var dGpu = gpu.Select((x, i) => x - before[i]).ToArray();
            Assert.Contains(dCpu, x => x != 0);
            double err = RelativeError(dGpu, dCpu);
            Assert.True(err < tolerance, $"{cc.Tensors[t].Name}: relative difference of the mutation {err}");
        }
    }

    /// <summary>
    /// Gaussian mutation of the same fresh random child on both backends is bit-identical in every storage type
    /// (the noise is the CPU's, drawn on the host; the kernel must round σ·z and the sum as the CPU does), the
    /// embeddings stay untouched, and a small noise chunk (odd tails, several uploads per tensor) changes nothing.
    /// </summary>
    [Theory]
    [InlineData(DType.F32, 1 << 22)]
    [InlineData(DType.F16, 1 << 22)]
    [InlineData(DType.BF16, 1 << 22)]
    [InlineData(DType.BF16, 1000)]
    [InlineData(DType.F32, 7)]
    public void MutateGaussian_MatchesCpuBackend_BitForBit(DType dtype, int chunkElements)
    {
        var src = Model(dtype, 41, 37, 29);
        var rnd = new Random(42);
        src.Add("model.embed_tokens.weight", dtype, [11, 5], Enumerable.Range(0, 55).Select(_ => (float)rnd.NextDouble()).ToArray());
        var options = new MutationOptions(MutationKind.Gaussian, GaussianStd: 0.05);
        using var cc = _cpu.Upload(src);
        using var gc = _gpu.Upload(src);
        _gpu.GaussianChunkElements = chunkElements;
        _cpu.MutateGaussian(cc, options, seed: 4321, generation: 9);
        _gpu.MutateGaussian(gc, options, seed: 4321, generation: 9);
        for (int t = 0; t < cc.Tensors.Count; t++)
        {
            var spec = cc.Tensors[t];
            var cpu = new byte[spec.ByteLength];
            var gpu = new byte[spec.ByteLength];
            Array.Fill(gpu, (byte)0xFF);
            _cpu.Download(cc, t, cpu);
            _gpu.Download(gc, t, gpu);
            Assert.True(cpu.AsSpan().SequenceEqual(gpu), $"{spec.Name}: cuda and cpu bytes differ");
            var before = src.GetBytes(spec.Name).ToArray();
            if (spec.Name.Contains("embed_tokens", StringComparison.Ordinal)) Assert.Equal(before, gpu);
            else
            {
                var orig = new float[spec.ElementCount];
                DTypeConversion.ToSingle(before, dtype, orig);
                var after = Floats(_gpu, gc, t);
                int changed = after.Where((x, i) => x != orig[i]).Count();
                Assert.True(changed > orig.Length / 2, $"{spec.Name}: only {changed} of {orig.Length} elements changed");
            }
        }
    }

    [Fact]
    public void ForeignWeightSet_IsRejected()
    {
        using var cpuSet = _cpu.Upload(Model(DType.F32, 1, 8, 8));
        using var g = _gpu.Upload(Model(DType.F32, 1, 8, 8));
        Assert.Throws<ArgumentException>(() => _gpu.TaskVector(cpuSet, g));
    }

    [Fact]
    public async Task SyntheticProblem_BaseModel_UploadsAndScoresAlike()
    {
        var problem = new SyntheticProblem(["a", "b"], new SyntheticProblemOptions(Layers: 2, Rows: 24, Cols: 16));
        using var cb = _cpu.Upload(problem.BaseModel());
        using var gb = _gpu.Upload(problem.BaseModel());
        var cs = await problem.EvaluateAsync(_cpu, cb, TestContext.Current.CancellationToken);
        var gs = await problem.EvaluateAsync(_gpu, gb, TestContext.Current.CancellationToken);
        Assert.Equal(cs, gs);
    }
}
