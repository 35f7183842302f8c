using System.Numerics.Tensors;
using CycleQD.Core;
using CycleQD.Core.Compute;
using CycleQD.Core.Random;
using CycleQD.Cpu.Kernels;
using CycleQD.Cpu.Linalg;
using CycleQD.Tensors;

namespace CycleQD.Cpu;

/// <summary>
/// The CPU twin of the GPU backend: element-wise kernels with System.Numerics.Tensors SIMD over
/// chunks spread on all cores; SVD through OpenBLAS (cblas_sgemm) and LAPACKE (sgesdd, sgeqrf,
/// sorgqr). Weight sets live in native host memory (<see cref="CpuWeightSet"/>).
/// </summary>
public sealed unsafe class CpuComputeBackend : IComputeBackend
{
    /// <summary>Elements per chunk of the element-wise kernels: three float32 buffers of this size stay in a core's L2.</summary>
    internal const int ChunkElements = 16384;

    /// <inheritdoc/>
    public string Name => "cpu";

    /// <summary>Largest parent count of <see cref="Merge"/>.</summary>
    public const int MaxParents = 8;

    /// <inheritdoc/>
    public IWeightSet Upload(IHostTensorSource source)
    {
        foreach (var t in source.Tensors)
            if (!DTypes.IsWeightType(t.DType))
                throw new ConfigurationException($"tensor '{t.Name}': {DTypes.Name(t.DType)} is not a weight type (F32, F16, BF16)");
        var set = new CpuWeightSet(source.Tensors);
        for (int i = 0; i < set.Tensors.Count; i++)
        {
            var spec = set.Tensors[i];
            var bytes = source.GetBytes(spec.Name);
            if (bytes.Length != spec.ByteLength)
                throw new ArgumentException($"tensor '{spec.Name}': source has {bytes.Length} bytes, {spec.DType} {spec.ShapeText} needs {spec.ByteLength}");
            bytes.CopyTo(new Span<byte>(set.Pointer(i), bytes.Length));
        }
        return set;
    }

    /// <inheritdoc/>
    public void Download(IWeightSet set, int index, Span<byte> destination)
    {
        var s = Own(set);
        long len = s.Tensors[index].ByteLength;
        if (destination.Length != len)
            throw new ArgumentException($"tensor '{s.Tensors[index].Name}': destination has {destination.Length} bytes, needs {len}");
        new ReadOnlySpan<byte>(s.Pointer(index), (int)len).CopyTo(destination);
    }

    /// <inheritdoc/>
    public IWeightSet Merge(IWeightSet baseModel, IReadOnlyList<IWeightSet> parents, ReadOnlySpan<float> weights)
    {
        var child = new CpuWeightSet(Own(baseModel).Tensors);
        try
        {
            MergeInto(child, baseModel, parents, weights);
            return child;
        }
        catch
        {
            child.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public void MergeInto(IWeightSet destination, IWeightSet baseModel, IReadOnlyList<IWeightSet> parents, ReadOnlySpan<float> weights)
    {
        var b = Own(baseModel);
        var child = Own(destination);
        CheckSameLayout(b, child);
        for (int i = 0; i < b.Tensors.Count; i++)
            if (child.Tensors[i].DType != b.Tensors[i].DType)
                throw new ArgumentException($"tensor '{b.Tensors[i].Name}': destination stores {child.Tensors[i].DType}, the base {b.Tensors[i].DType}");
        if (parents.Count < 1 || parents.Count > MaxParents) throw new ArgumentException($"merge takes 1 to {MaxParents} parents, got {parents.Count}");
        if (weights.Length != parents.Count) throw new ArgumentException($"{weights.Length} weights for {parents.Count} parents");
        var ps = parents.Select(Own).ToArray();
        foreach (var p in ps) CheckSameLayout(b, p);
        float sum = 0;
        foreach (float w in weights) sum += w;
        if (sum == 0 || !float.IsFinite(sum)) throw new ArgumentException($"merge weights sum to {sum}");
        var coef = new float[weights.Length];
        for (int i = 0; i < coef.Length; i++) coef[i] = weights[i] / sum;

        for (int t = 0; t < b.Tensors.Count; t++)
        {
            int tensor = t;
            var dt = b.Tensors[t].DType;
            if ((dt == DType.F32 || dt == DType.BF16) && ps.All(p => p.Tensors[tensor].DType == dt))
            {
                int size = DTypes.SizeOf(dt);
                ForEachChunk(b.Tensors[t].ElementCount, (start, count, _) =>
                {
                    long off = start * size;
                    if (dt == DType.F32)
                        FusedMerge.F32((float*)(b.Pointer(tensor) + off), ps.Select(p => (nint)(p.Pointer(tensor) + off)).ToArray(), coef,
                            (float*)(child.Pointer(tensor) + off), count);
                    else
                        FusedMerge.BF16((ushort*)(b.Pointer(tensor) + off), ps.Select(p => (nint)(p.Pointer(tensor) + off)).ToArray(), coef,
                            (ushort*)(child.Pointer(tensor) + off), count);
                });
                continue;
            }
            // Mixed or F16 storage: convert through float32 staging buffers.
            ForEachChunk(b.Tensors[t].ElementCount, (start, count, buf) =>
            {
                var bb = buf.A.AsSpan(0, count);
                var acc = buf.B.AsSpan(0, count);
                var tmp = buf.C.AsSpan(0, count);
                Load(b, tensor, start, bb);
                bb.CopyTo(acc);
                for (int p = 0; p < ps.Length; p++)
                {
                    Load(ps[p], tensor, start, tmp);
                    TensorPrimitives.Subtract(tmp, bb, tmp);
                    TensorPrimitives.MultiplyAdd(tmp, coef[p], acc, acc);
                }
                Store(child, tensor, start, acc);
            });
        }
    }

    /// <inheritdoc/>
    public IWeightSet TaskVector(IWeightSet model, IWeightSet baseModel)
    {
        var m = Own(model);
        var b = Own(baseModel);
        CheckSameLayout(b, m);
        var tv = new CpuWeightSet(b.Tensors.Select(s => s with { DType = DType.F32 }).ToArray());
        for (int t = 0; t < b.Tensors.Count; t++)
        {
            int tensor = t;
            ForEachChunk(b.Tensors[t].ElementCount, (start, count, buf) =>
            {
                var x = buf.A.AsSpan(0, count);
                var y = buf.B.AsSpan(0, count);
                Load(m, tensor, start, x);
                Load(b, tensor, start, y);
                TensorPrimitives.Subtract(x, y, x);
                Store(tv, tensor, start, x);
            });
        }
        return tv;
    }

    /// <inheritdoc/>
    public void MutateSvd(IWeightSet child, IWeightSet baseModel, MutationOptions options, ulong seed, uint generation)
    {
        var c = Own(child);
        var b = Own(baseModel);
        CheckSameLayout(b, c);
        // Grouped by shape so that same-shaped matrices go through the same buffers one after the
        // other; OpenBLAS threads each call, which on a few cores beats running matrices side by side.
        var groups = Enumerable.Range(0, c.Tensors.Count).Where(i => options.Applies(c.Tensors[i]))
            .GroupBy(i => (c.Tensors[i].Shape[0], c.Tensors[i].Shape[1])).ToList();
        if (groups.Count > 0) CpuNativeLibraries.EnsureLinearAlgebra();
        foreach (var g in groups)
        {
            int m = checked((int)g.Key.Item1), n = checked((int)g.Key.Item2);
            var theta = new float[(long)m * n];
            var tau = new float[(long)m * n];
            foreach (int i in g) MutateOne(c, b, i, m, n, theta, tau, options, seed, generation);
        }
    }

    private void MutateOne(CpuWeightSet c, CpuWeightSet b, int i, int m, int n, float[] theta, float[] tau, MutationOptions o, ulong seed, uint generation)
    {
        int r = Math.Min(m, n);
        int k = o.SvdRank == 0 ? r : Math.Min(o.SvdRank, r);
        LoadAll(c, i, theta);
        LoadAll(b, i, tau);
        TensorPrimitives.Subtract(theta, tau, tau);
        // LAPACK rejects a NaN input with a bare argument number (sgesdd: info = -5); name the tensor instead.
        ThrowIfNonFinite(c, i, tau, "in the child's task vector after crossover");
        bool randomized = o.SvdMethod == SvdMethod.Randomized || (o.SvdMethod == SvdMethod.Auto && k <= r / 4);
        var svd = randomized
            ? Svd.Randomized(tau, m, n, k, o.OversamplingFor(k), o.PowerIterations, seed, (uint)i, generation)
            : Svd.Full(tau, m, n, k);
        ApplyScaledComponents(theta, m, n, svd, o.SvdScaleMax, seed, (uint)i, generation);
        ThrowIfNonFinite(c, i, theta, "after the SVD mutation");
        StoreAll(c, i, theta);
    }

    private static void ThrowIfNonFinite(CpuWeightSet c, int tensor, float[] values, string where)
    {
        var count = NonFiniteScan.Count(values);
        if (!count.IsFinite) throw new NonFiniteWeightsException(c.Tensors[tensor].Name, $"{count} {where} (float32 overflow)");
    }

    /// <summary>
    /// theta += U_k diag(r_j s_j) V_kᵀ with r_j = w_max · Uniform(seed, stream, generation, SvdScale, j):
    /// adding r_j s_j u_j v_jᵀ to τ scales its j-th singular value by (1 + r_j).
    /// </summary>
    internal static void ApplyScaledComponents(float[] theta, int m, int n, SvdResult svd, double wMax, ulong seed, uint stream, uint generation)
    {
        int k = svd.K;
        var us = new float[(long)m * k];
        var scale = new float[k];
        for (int j = 0; j < k; j++)
            scale[j] = (float)(wMax * Philox4x32.Uniform(seed, stream, generation, Streams.SvdScale, (ulong)j)) * svd.S[j];
        for (int row = 0; row < m; row++)
        {
            long src = (long)row * svd.LdU, dst = (long)row * k;
            for (int j = 0; j < k; j++) us[dst + j] = svd.U[src + j] * scale[j];
        }
        fixed (float* pus = us, pvt = svd.Vt, pt = theta)
            Svd.Gemm(false, false, m, n, k, pus, k, pvt, n, pt, n, beta: 1f);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Per matrix one cblas_sgemm: (U diag(r ⊙ S)) · Vt is added to the child in float32 (β = 1) and stored
    /// back in the child's storage type; the child's own values are never decomposed.
    /// </remarks>
    public void MutateSvdExpertBasis(IWeightSet child, IWeightSet baseModel, ExpertSvdBasis basis, MutationOptions options, ulong seed, uint generation)
    {
        var c = Own(child);
        CheckSameLayout(Own(baseModel), c);
        basis.CheckLayout(c.Tensors);
        float[]? theta = null;
        for (int i = 0; i < c.Tensors.Count; i++)
        {
            if (!options.Applies(c.Tensors[i])) continue;
            var f = basis.Require(i);
            long size = (long)f.Rows * f.Cols;
            if (theta is null || theta.LongLength != size) theta = new float[size];
            LoadAll(c, i, theta);
            ApplyScaledComponents(theta, f.Rows, f.Cols, new SvdResult(f.U, f.Rank, f.S, f.Vt, f.Rank), options.SvdScaleMax, seed, (uint)i, generation);
            ThrowIfNonFinite(c, i, theta, "after the expert-basis SVD mutation");
            StoreAll(c, i, theta);
        }
    }

    /// <inheritdoc/>
    public void MutateGaussian(IWeightSet child, MutationOptions options, ulong seed, uint generation)
    {
        var c = Own(child);
        float sigma = (float)options.GaussianStd;
        for (int t = 0; t < c.Tensors.Count; t++)
        {
            if (!options.Applies(c.Tensors[t])) continue;
            int tensor = t;
            ForEachChunk(c.Tensors[t].ElementCount, (start, count, buf) =>
            {
                var x = buf.A.AsSpan(0, count);
                var noise = buf.B.AsSpan(0, count);
                Load(c, tensor, start, x);
                Philox4x32.FillNormal(noise, seed, (uint)tensor, generation, Streams.GaussianNoise, (ulong)start);
                // Two roundings, σ·z then + θ, never a fused multiply-add: the CUDA backend's
                // add_scaled_noise kernel does the same (__fmul_rn, __fadd_rn) and must match bit for bit.
                TensorPrimitives.Multiply(noise, sigma, noise);
                TensorPrimitives.Add(noise, x, x);
                Store(c, tensor, start, x);
            });
        }
    }

    /// <summary>Nothing to release: weight sets free their own memory.</summary>
    public void Dispose() { }

    internal sealed class ChunkBuffers
    {
        public readonly float[] A = new float[ChunkElements], B = new float[ChunkElements], C = new float[ChunkElements];
    }

    /// <summary>Runs <paramref name="body"/>(start, count, buffers) over [0, elements) in chunks, in parallel; chunks are disjoint, so results do not depend on scheduling.</summary>
    internal static void ForEachChunk(long elements, Action<long, int, ChunkBuffers> body)
    {
        long chunks = (elements + ChunkElements - 1) / ChunkElements;
        if (chunks <= 1)
        {
            if (elements > 0) body(0, (int)elements, new ChunkBuffers());
            return;
        }
        Parallel.For(0L, chunks, () => new ChunkBuffers(), (ci, _, buf) =>
        {
            long start = ci * ChunkElements;
            body(start, (int)Math.Min(ChunkElements, elements - start), buf);
            return buf;
        }, _ => { });
    }

    private static void Load(CpuWeightSet s, int tensor, long start, Span<float> destination)
    {
        var dt = s.Tensors[tensor].DType;
        int size = DTypes.SizeOf(dt);
        StorageConversion.Load(s.Bytes(tensor, start * size, destination.Length * size), dt, destination);
    }

    private static void Store(CpuWeightSet s, int tensor, long start, ReadOnlySpan<float> source)
    {
        var dt = s.Tensors[tensor].DType;
        int size = DTypes.SizeOf(dt);
        StorageConversion.Store(source, dt, s.Bytes(tensor, start * size, source.Length * size));
    }

    private static void LoadAll(CpuWeightSet s, int tensor, float[] destination)
    {
        ForEachChunk(destination.LongLength, (start, count, _) => Load(s, tensor, start, destination.AsSpan((int)start, count)));
    }

    private static void StoreAll(CpuWeightSet s, int tensor, float[] source)
    {
        ForEachChunk(source.LongLength, (start, count, _) => Store(s, tensor, start, source.AsSpan((int)start, count)));
    }

    private static CpuWeightSet Own(IWeightSet set) =>
        set as CpuWeightSet ?? throw new ArgumentException($"weight set {set.GetType().Name} does not belong to the CPU backend");

    private static void CheckSameLayout(CpuWeightSet b, CpuWeightSet p)
    {
        if (p.Tensors.Count != b.Tensors.Count) throw new ArgumentException($"weight sets differ: {p.Tensors.Count} tensors vs {b.Tensors.Count}");
        for (int i = 0; i < b.Tensors.Count; i++)
            if (p.Tensors[i].Name != b.Tensors[i].Name || !p.Tensors[i].Shape.AsSpan().SequenceEqual(b.Tensors[i].Shape))
                throw new ArgumentException($"tensor {i}: '{p.Tensors[i].Name}' {p.Tensors[i].ShapeText} does not match '{b.Tensors[i].Name}' {b.Tensors[i].ShapeText}");
    }
}
