using CycleQD.Tensors;

namespace CycleQD.Cuda.Kernels;

/// <summary>
/// Typed launchers for the production kernels (native/kernels/*.cu). Every launch is
/// asynchronous on the given stream; pointers are device addresses (<see cref="DeviceBuffer{T}.Pointer"/>)
/// and stay owned by the caller. Storage types are F32, F16 or BF16; arithmetic is float32.
/// </summary>
internal sealed class CudaKernels
{
    private const uint Block = 256;
    private readonly CudaContext _context;
    private readonly uint _maxGrid;
    private readonly Dictionary<string, CudaFunction> _functions = new(StringComparer.Ordinal);

    /// <summary>Binds the kernels of <paramref name="context"/> (modules load lazily on first use).</summary>
    public CudaKernels(CudaContext context)
    {
        _context = context;
        // Grid-stride kernels: enough resident blocks to fill every SM several times over.
        _maxGrid = (uint)Math.Max(1, context.Device.Multiprocessors * 16);
    }

    /// <summary>
    /// child = base + Σ wᵢ(θᵢ − base) / Σ wⱼ over 1..8 parents, <paramref name="n"/> elements of <paramref name="dtype"/>.
    /// </summary>
    /// <exception cref="ArgumentException">no parents, more than 8, weights of another count, or Σw = 0.</exception>
    public void Merge(DType dtype, ulong baseWeights, ReadOnlySpan<ulong> parents, ReadOnlySpan<double> weights, ulong child, long n, CudaStream stream) =>
        Launch("merge", "merge_" + Suffix(dtype), n, stream, MergeArguments(baseWeights, parents, weights, child, n));

    /// <summary>The merge kernel's argument struct, with cᵢ = wᵢ / Σw computed in float64 and stored as float32.</summary>
    internal static unsafe MergeArgs MergeArguments(ulong baseWeights, ReadOnlySpan<ulong> parents, ReadOnlySpan<double> weights, ulong child, long n)
    {
        if (parents.Length is 0 or > MergeArgs.MaxParents)
            throw new ArgumentException($"merge takes 1 to {MergeArgs.MaxParents} parents, got {parents.Length}", nameof(parents));
        if (weights.Length != parents.Length)
            throw new ArgumentException($"{weights.Length} weights for {parents.Length} parents", nameof(weights));
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        double sum = 0;
        foreach (double w in weights) sum += w;
        if (sum == 0 || !double.IsFinite(sum)) throw new ArgumentException($"merge weights sum to {sum}; cannot normalise", nameof(weights));
        var a = new MergeArgs { Base = baseWeights, Out = child, N = n, NumParents = parents.Length };
        for (int i = 0; i < parents.Length; i++)
        {
            a.Parents[i] = parents[i];
            a.Coef[i] = (float)(weights[i] / sum);
        }
        return a;
    }

    /// <summary>
    /// child = base + Σ cᵢ(θᵢ − base) with the coefficients cᵢ given as they are (already
    /// normalised by the caller, e.g. in float32 exactly as the CPU backend does).
    /// </summary>
    /// <exception cref="ArgumentException">no parents, more than 8, or a coefficient count other than the parent count.</exception>
    public unsafe void MergeCoefficients(DType dtype, ulong baseWeights, ReadOnlySpan<ulong> parents, ReadOnlySpan<float> coefficients, ulong child, long n, CudaStream stream)
    {
        if (parents.Length is 0 or > MergeArgs.MaxParents)
            throw new ArgumentException($"merge takes 1 to {MergeArgs.MaxParents} parents, got {parents.Length}", nameof(parents));
        if (coefficients.Length != parents.Length)
            throw new ArgumentException($"{coefficients.Length} coefficients for {parents.Length} parents", nameof(coefficients));
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        var a = new MergeArgs { Base = baseWeights, Out = child, N = n, NumParents = parents.Length };
        for (int i = 0; i < parents.Length; i++)
        {
            a.Parents[i] = parents[i];
            a.Coef[i] = coefficients[i];
        }
        Launch("merge", "merge_" + Suffix(dtype), n, stream, a);
    }

    /// <summary>
    /// The descriptors of every group of <paramref name="plan"/>, back to back in group order: per tensor its base,
    /// parent and output pointers (from the callbacks), element count and first block.
    /// </summary>
    internal static unsafe MergeSegment[] Segments(MergeGroupPlan plan, Func<int, ulong> baseOf, Func<int, int, ulong> parentOf, int parents, Func<int, ulong> outOf)
    {
        if (parents is < 1 or > MergeArgs.MaxParents)
            throw new ArgumentException($"merge takes 1 to {MergeArgs.MaxParents} parents, got {parents}", nameof(parents));
        var segments = new MergeSegment[plan.Groups.Sum(g => g.Segments.Count)];
        int k = 0;
        foreach (var g in plan.Groups)
            foreach (var s in g.Segments)
            {
                ref var d = ref segments[k++];
                d.Base = baseOf(s.Tensor);
                for (int p = 0; p < parents; p++) d.Parents[p] = parentOf(s.Tensor, p);
                d.Out = outOf(s.Tensor);
                d.N = s.Elements;
                d.FirstBlock = s.FirstBlock;
            }
        return segments;
    }

    /// <summary>
    /// Merges every group of <paramref name="plan"/>, one launch each: builds the descriptors, uploads them into
    /// <paramref name="descriptors"/> (allocated or grown here, owned by the caller) and launches merge_group_*.
    /// The stream is synchronized before the upload, so descriptors a previous call's kernels still read are not overwritten.
    /// </summary>
    public void MergeGroups(MergeGroupPlan plan, Func<int, ulong> baseOf, Func<int, int, ulong> parentOf, Func<int, ulong> outOf,
        ReadOnlySpan<float> coefficients, ref DeviceBuffer<MergeSegment>? descriptors, CudaStream stream)
    {
        if (plan.Groups.Count == 0) return;
        var segments = Segments(plan, baseOf, parentOf, coefficients.Length, outOf);
        if (descriptors is null || descriptors.Length < segments.Length)
        {
            descriptors?.Dispose();
            descriptors = _context.Allocate<MergeSegment>(segments.Length);
        }
        stream.Synchronize();
        descriptors.CopyFrom(segments);
        LaunchGroups(plan, descriptors.Pointer, coefficients, stream);
    }

    /// <summary>One merge_group_* launch per group of <paramref name="plan"/>, over descriptors already uploaded to <paramref name="descriptors"/> (as <see cref="Segments"/> lays them out).</summary>
    public void LaunchGroups(MergeGroupPlan plan, ulong descriptors, ReadOnlySpan<float> coefficients, CudaStream stream)
    {
        long first = 0;
        foreach (var g in plan.Groups)
        {
            MergeGroup(g.DType, descriptors + (ulong)(first * System.Runtime.CompilerServices.Unsafe.SizeOf<MergeSegment>()), g.Segments.Count, coefficients, g.Blocks, stream);
            first += g.Segments.Count;
        }
    }

    /// <summary>
    /// One grouped merge launch: <paramref name="count"/> descriptors at <paramref name="segments"/> (device memory, first
    /// blocks ascending from 0), <paramref name="blocks"/> blocks in all, the same coefficients for every tensor.
    /// </summary>
    /// <exception cref="ArgumentException">no parents, more than 8, no segments, or a block count the grid cannot take.</exception>
    public unsafe void MergeGroup(DType dtype, ulong segments, int count, ReadOnlySpan<float> coefficients, long blocks, CudaStream stream)
    {
        if (coefficients.Length is 0 or > MergeArgs.MaxParents)
            throw new ArgumentException($"merge takes 1 to {MergeArgs.MaxParents} parents, got {coefficients.Length}", nameof(coefficients));
        if (count < 1) throw new ArgumentException($"a grouped merge needs at least one tensor, got {count}", nameof(count));
        if (blocks is < 1 or > int.MaxValue) throw new ArgumentException($"a grouped merge of {blocks} blocks does not fit one grid (1 to {int.MaxValue})", nameof(blocks));
        var a = new MergeGroupArgs { Segments = segments, NumSegments = count, NumParents = coefficients.Length };
        for (int i = 0; i < coefficients.Length; i++) a.Coef[i] = coefficients[i];
        Function("merge", "merge_group_" + Suffix(dtype)).Launch((uint)blocks, MergeGroupPlan.Threads, stream, a);
    }

    /// <summary>tau = theta − base: <paramref name="n"/> elements of <paramref name="dtype"/> in, float32 out.</summary>
    public void TaskVector(DType dtype, ulong theta, ulong baseWeights, ulong tau, long n, CudaStream stream) =>
        Launch("taskvec", "task_vector_" + Suffix(dtype), n, stream, new TaskVectorArgs { Theta = theta, Base = baseWeights, Tau = tau, N = n });

    /// <summary>theta = base + tau: float32 tau, <paramref name="dtype"/> base and theta (rounded to nearest even).</summary>
    public void ApplyTaskVector(DType dtype, ulong baseWeights, ulong tau, ulong theta, long n, CudaStream stream) =>
        Launch("taskvec", "apply_task_vector_" + Suffix(dtype), n, stream, new ApplyTaskVectorArgs { Base = baseWeights, Tau = tau, Theta = theta, N = n });

    /// <summary>Converts <paramref name="n"/> elements between float32 and F16/BF16 (one side must be F32).</summary>
    /// <exception cref="NotSupportedException">a pair other than F32↔F16 or F32↔BF16.</exception>
    public void Convert(DType from, DType to, ulong input, ulong output, long n, CudaStream stream)
    {
        string entry = (from, to) switch
        {
            (DType.F32, DType.BF16) => "convert_f32_to_bf16",
            (DType.BF16, DType.F32) => "convert_bf16_to_f32",
            (DType.F32, DType.F16) => "convert_f32_to_f16",
            (DType.F16, DType.F32) => "convert_f16_to_f32",
            _ => throw new NotSupportedException($"no conversion kernel from {DTypes.Name(from)} to {DTypes.Name(to)} (F32 <-> F16/BF16 only)"),
        };
        Launch("convert", entry, n, stream, new ConvertArgs { In = input, Out = output, N = n });
    }

    /// <summary>
    /// s ← s·(1 + r), r = wMax·u, u the Philox4x32-10 uniform of (seed, stream = tensor index,
    /// generation, element); when <paramref name="delta"/> is not 0 it receives r·s (the old s).
    /// </summary>
    public void RescaleSingularValues(ulong singularValues, ulong delta, long n, ulong seed, uint tensorIndex, uint generation, float wMax, CudaStream stream) =>
        Launch("mutate", "sv_rescale", (n + 3) / 4, stream, new RescaleArgs
        {
            S = singularValues, Delta = delta, N = n, Seed = seed, Stream = tensorIndex, Generation = generation, WMax = wMax,
        });

    /// <summary>
    /// U·diag(scale) for <paramref name="batch"/> column-major rows×cols float32 matrices stored back
    /// to back (column c of matrix b multiplied by scale[b·cols + c]); output may alias input.
    /// </summary>
    public void ScaleColumns(ulong input, ulong scale, ulong output, long rows, int cols, int batch, CudaStream stream) =>
        Launch("mutate", "scale_columns_f32", rows * cols * batch, stream, new ScaleColumnsArgs
        {
            In = input, Scale = scale, Out = output, Rows = rows, Cols = cols, Batch = batch,
        });

    /// <summary>Fills <paramref name="n"/> float32 with standard normal draws (Box–Muller over a Philox stream).</summary>
    public void FillGaussian(ulong output, long n, ulong seed, uint streamId, uint generation, CudaStream stream) =>
        Launch("mutate", "gaussian_fill_f32", (n + 3) / 4, stream, new GaussianArgs { Out = output, N = n, Seed = seed, Stream = streamId, Generation = generation });

    /// <summary>
    /// The Gaussian mutation's update x = store(x + σ·z) on <paramref name="n"/> elements of <paramref name="dtype"/>
    /// in place, z the float32 normals at <paramref name="noise"/>; σ·z and the sum rounded separately, as the CPU backend does.
    /// </summary>
    public void AddScaledNoise(DType dtype, ulong weights, ulong noise, float sigma, long n, CudaStream stream) =>
        Launch("mutate", "add_scaled_noise_" + Suffix(dtype), n, stream, new ScaledNoiseArgs { X = weights, Noise = noise, N = n, Sigma = sigma });

    internal static string Suffix(DType dtype) => dtype switch
    {
        DType.F32 => "f32",
        DType.F16 => "f16",
        DType.BF16 => "bf16",
        _ => throw new NotSupportedException($"kernels store F32, F16 or BF16, not {DTypes.Name(dtype)}"),
    };

    /// <summary>Grid size for <paramref name="work"/> grid-stride items.</summary>
    internal static uint GridFor(long work, uint maxGrid) => (uint)Math.Clamp((work + Block - 1) / Block, 1, maxGrid);

    private void Launch<TArgs>(string module, string entry, long work, CudaStream stream, in TArgs args) where TArgs : unmanaged
    {
        if (work <= 0) return;
        Function(module, entry).Launch(GridFor(work, _maxGrid), Block, stream, args);
    }

    private CudaFunction Function(string module, string entry)
    {
        lock (_functions)
        {
            if (!_functions.TryGetValue(entry, out var f))
                _functions[entry] = f = _context.Module(module).Function(entry);
            return f;
        }
    }
}
