using System.Globalization;
using CycleQD.Core;
using CycleQD.Core.Compute;
using CycleQD.Core.Random;
using CycleQD.Cuda.Blas;
using CycleQD.Cuda.Kernels;
using CycleQD.Cuda.Planning;
using CycleQD.Cuda.Solver;
using CycleQD.Cuda.Streaming;
using CycleQD.Cuda.Svd;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Backend;

/// <summary>
/// <see cref="IComputeBackend"/> on one GPU, the twin of the CPU backend: weight sets live in device
/// memory (<see cref="CudaWeightSet"/>); merge, task vector and task-vector application run as the
/// kernels of native/kernels; the SVD mutation is the batched randomized SVD
/// (<see cref="RandomizedSvd"/>) followed by <see cref="SvdMutation"/>, whose scales r_j come from the
/// same Philox draws as the CPU backend's (purpose <see cref="Streams.SvdScale"/>, stream = tensor
/// index). Every call waits for its work before returning. The Gaussian mutation adds normals drawn
/// on the host by the CPU backend's code, so it is bit-identical to the CPU backend.
/// In <see cref="WeightResidency.Streamed"/> mode (<see cref="Create(int, CudaBackendOptions)"/>) uploaded
/// sets stay in host memory (<see cref="CudaHostWeightSet"/>) and every operation that reads one streams its
/// tensors to the device through double-buffered pinned staging (<see cref="TensorStreamer"/>) into the same
/// kernels, so results equal Resident mode's bit for bit; only the sets the backend creates live on the device.
/// Every device allocation is counted (<see cref="DeviceBytesInUse"/>, <see cref="PeakDeviceBytes"/>).
/// </summary>
public sealed class CudaComputeBackend : IComputeBackend, IDeviceMemoryGauge
{
    /// <summary>Weight sets a run keeps on the GPU besides its experts: the base, the child being built and its two parents.</summary>
    public const int RunSetsBesidesExperts = 4;

    /// <summary>Bytes kept free for the CUDA runtime, cuBLAS/cuSOLVER workspaces and JIT-compiled modules.</summary>
    public const long RuntimeReserveBytes = 512L << 20;

    private readonly CudaContext _context;
    private readonly CudaStream _stream;
    private readonly CudaKernels _kernels;
    private readonly CudaBackendOptions _options;
    private CudaStreamingDevice? _streaming;
    private TensorStreamer? _streamer;
    private CublasHandle? _blas;
    private CusolverHandle? _solver;
    private DeviceBuffer<MergeSegment>? _mergeSegments;
    private bool _disposed;

    private CudaComputeBackend(CudaContext context, CudaBackendOptions options)
    {
        _context = context;
        _options = options;
        _stream = CudaStream.Create(context);
        _kernels = new CudaKernels(context);
    }

    /// <summary>Opens GPU <paramref name="ordinal"/> in <see cref="WeightResidency.Resident"/> mode.</summary>
    /// <exception cref="CudaUnavailableException">no driver, no GPU or no such ordinal; the message says which.</exception>
#pragma warning disable RS0027 // kept as it shipped (optional ordinal) so existing callers and binaries keep working
    public static CudaComputeBackend Create(int ordinal = 0) => Create(ordinal, new CudaBackendOptions());
#pragma warning restore RS0027

    /// <summary>Opens GPU <paramref name="ordinal"/> with <paramref name="options"/> (e.g. <see cref="WeightResidency.Streamed"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">an option is out of range; the message names it.</exception>
    /// <exception cref="CudaUnavailableException">no driver, no GPU or no such ordinal; the message says which.</exception>
    public static CudaComputeBackend Create(int ordinal, CudaBackendOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var context = CudaContext.Create(ordinal);
        try
        {
            return new CudaComputeBackend(context, options);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public string Name => "cuda:" + _context.Device.Ordinal.ToString(CultureInfo.InvariantCulture);

    /// <summary>The GPU.</summary>
    public CudaDeviceInfo Device => _context.Device;

    /// <summary>Where uploaded weight sets live.</summary>
    public WeightResidency Residency => _options.Residency;

    /// <summary>Free device memory now, as the driver reports it.</summary>
    public long FreeDeviceBytes => _context.MemoryInfo().Free;

    /// <summary>
    /// Device bytes this backend has allocated and not freed: weight sets, staging buffers, mutation
    /// workspaces. cuBLAS/cuSOLVER's own workspaces and the CUDA context are not counted (the runtime reserve covers them).
    /// </summary>
    public long DeviceBytesInUse => _context.Ledger.InUseBytes;

    /// <summary>The most device bytes in use at once (as <see cref="DeviceBytesInUse"/> counts them) since the backend was created or <see cref="ResetPeakDeviceBytes"/> was last called.</summary>
    public long PeakDeviceBytes => _context.Ledger.PeakBytes;

    /// <summary>Starts a new high-water mark at the bytes in use now (call it at the start of a generation, read <see cref="PeakDeviceBytes"/> at its end).</summary>
    public void ResetPeakDeviceBytes() => _context.Ledger.ResetPeak();

    long IDeviceMemoryGauge.PeakBytes => PeakDeviceBytes;

    void IDeviceMemoryGauge.ResetPeak() => ResetPeakDeviceBytes();

    /// <summary>
    /// Refuses a model that cannot run in <see cref="WeightResidency.Streamed"/> mode on this card next to
    /// the evaluator, before anything is uploaded: the streaming plan for <paramref name="config"/> stored as
    /// <paramref name="storage"/> against the free memory now.
    /// </summary>
    /// <exception cref="DeviceMemoryException">the plan's peak exceeds the free memory; the message gives every number.</exception>
    public StreamingMemoryPlan CheckStreamingPlan(LlamaConfig config, DType storage, EvaluatorMemory evaluator, StreamingPlanOptions? options = null)
    {
        options ??= new StreamingPlanOptions(ChunkBytes: _options.StagingChunkBytes);
        var plan = StreamingMemoryPlan.Create(config, storage, _context.MemoryInfo().Free, evaluator, options);
        plan.EnsureFits(_context.Device.Name);
        return plan;
    }

    /// <summary>
    /// Refuses a model that cannot be merged and mutated on this card, before any weight is uploaded:
    /// the plan for <paramref name="config"/> stored as <paramref name="storage"/> against the free memory now.
    /// </summary>
    /// <exception cref="DeviceMemoryException">the plan's peak exceeds the free memory.</exception>
    public DeviceMemoryPlan CheckPlan(LlamaConfig config, DType storage, DeviceMemoryPlanOptions? options = null)
    {
        var plan = DeviceMemoryPlan.Create(config, storage, _context.MemoryInfo().Free, options);
        plan.EnsureFits(_context.Device.Name);
        return plan;
    }

    /// <summary>
    /// Device bytes that <paramref name="sets"/> resident weight sets of layout <paramref name="tensors"/>
    /// need next to the SVD mutation of the largest 2-D tensor (batch 1, rank <paramref name="rank"/>;
    /// 0 = full; <paramref name="oversampling"/> &lt; 0 = the default) and the runtime reserve.
    /// </summary>
    public static ResidentMemory ResidentNeed(IReadOnlyList<TensorSpec> tensors, int sets, int rank, int oversampling)
    {
        long setBytes = tensors.Sum(t => t.ByteLength);
        long workspace = 0;
        foreach (var t in tensors.Where(t => t.Shape.Length == 2 && t.Shape[0] > 0 && t.Shape[1] > 0))
        {
            int rows = checked((int)t.Shape[0]), cols = checked((int)t.Shape[1]);
            int k = rank == 0 ? Math.Min(rows, cols) : Math.Min(rank, Math.Min(rows, cols));
            int p = oversampling >= 0 ? oversampling : Math.Max(10, k / 2);
            workspace = Math.Max(workspace, DeviceMemoryPlan.BatchWorkspaceBytes(rows, cols, 1, new DeviceMemoryPlanOptions(k, p)));
        }
        return new ResidentMemory(setBytes, sets, workspace, RuntimeReserveBytes);
    }

    /// <summary>
    /// Throws when <paramref name="sets"/> weight sets of layout <paramref name="tensors"/> cannot
    /// stay resident next to the SVD mutation of the largest 2-D tensor (batch 1, rank
    /// <paramref name="rank"/>; 0 = full) and the runtime reserve in <paramref name="freeBytes"/>.
    /// </summary>
    /// <exception cref="DeviceMemoryException">it does not fit; the message gives the numbers and names the card.</exception>
    public static void EnsureResidentFits(IReadOnlyList<TensorSpec> tensors, int sets, int rank, int oversampling, long freeBytes, string deviceName)
    {
        var need = ResidentNeed(tensors, sets, rank, oversampling);
        if (need.TotalBytes <= freeBytes) return;
        throw new DeviceMemoryException(string.Create(CultureInfo.InvariantCulture,
            $"{deviceName} has {MiB(freeBytes)} MiB free but {sets} resident weight sets of {MiB(need.SetBytes)} MiB, the SVD mutation workspace " +
            $"({MiB(need.WorkspaceBytes)} MiB) and the runtime reserve ({MiB(need.ReserveBytes)} MiB) need {MiB(need.TotalBytes)} MiB; use a larger card or --device cpu"));
    }

    /// <summary>
    /// Checks that <paramref name="sets"/> weight sets like <paramref name="tensors"/> plus the
    /// mutation workspace fit the free device memory now (the static overload with the free bytes filled in).
    /// </summary>
    public void EnsureResidentFits(IReadOnlyList<TensorSpec> tensors, int sets, MutationOptions mutation) =>
        EnsureResidentFits(tensors, sets, mutation.SvdRank, mutation.Oversampling, _context.MemoryInfo().Free, _context.Device.Name);

    /// <inheritdoc/>
    /// <remarks>
    /// In <see cref="WeightResidency.Streamed"/> mode the set stays in host memory (<see cref="CudaHostWeightSet"/>):
    /// an <see cref="IMappedTensorSource"/> hands over a mapping that stays open for the set's life, any
    /// other source is copied into native host memory. Nothing is allocated on the device.
    /// </remarks>
    public IWeightSet Upload(IHostTensorSource source)
    {
        Enter();
        foreach (var t in source.Tensors)
            if (!DTypes.IsWeightType(t.DType))
                throw new ConfigurationException($"tensor '{t.Name}': {DTypes.Name(t.DType)} is not a weight type (F32, F16, BF16)");
        if (_options.Residency == WeightResidency.Streamed) return CudaHostWeightSet.Create(this, source);
        long bytes = source.Tensors.Sum(t => t.ByteLength);
        long free = _context.MemoryInfo().Free;
        if (bytes > free - RuntimeReserveBytes)
            throw new DeviceMemoryException(string.Create(CultureInfo.InvariantCulture,
                $"{_context.Device.Name}: uploading a weight set of {MiB(bytes)} MiB with {MiB(free)} MiB free (and {MiB(RuntimeReserveBytes)} MiB kept for the runtime); use a larger card or --device cpu"));
        var set = new CudaWeightSet(this, _context, source.Tensors);
        try
        {
            for (int i = 0; i < set.Tensors.Count; i++)
            {
                var spec = set.Tensors[i];
                var data = source.GetBytes(spec.Name);
                if (data.Length != spec.ByteLength)
                    throw new ArgumentException($"tensor '{spec.Name}': source has {data.Length} bytes, {spec.DType} {spec.ShapeText} needs {spec.ByteLength}");
                set.Buffer(i).CopyFrom(data);
            }
            return set;
        }
        catch
        {
            set.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public void Download(IWeightSet set, int index, Span<byte> destination)
    {
        Enter();
        var s = OwnAny(set);
        long len = s.Tensors[index].ByteLength;
        if (destination.Length != len)
            throw new ArgumentException($"tensor '{s.Tensors[index].Name}': destination has {destination.Length} bytes, needs {len}");
        if (s is CudaHostWeightSet host)
        {
            host.Bytes(index).CopyTo(destination);
            return;
        }
        _stream.Synchronize();
        ((CudaWeightSet)s).Buffer(index).CopyTo(destination);
    }

    /// <inheritdoc/>
    public IWeightSet Merge(IWeightSet baseModel, IReadOnlyList<IWeightSet> parents, ReadOnlySpan<float> weights)
    {
        var child = new CudaWeightSet(this, _context, OwnAny(baseModel).Tensors);
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

    /// <summary>
    /// Tensors of at most this many elements are merged together, one launch per storage type
    /// (<see cref="MergeGroupPlan"/>); 0 merges every tensor by its own launch. Results are identical either way.
    /// </summary>
    internal long GroupedMergeMaxElements { get; set; } = MergeGroupPlan.DefaultMaxGroupedElements;

    /// <inheritdoc/>
    public void MergeInto(IWeightSet destination, IWeightSet baseModel, IReadOnlyList<IWeightSet> parents, ReadOnlySpan<float> weights)
    {
        Enter();
        var bAny = OwnAny(baseModel);
        var child = Own(destination, "the merge's destination");
        CheckSameLayout(bAny, child);
        if (parents.Count < 1 || parents.Count > MergeArgs.MaxParents) throw new ArgumentException($"merge takes 1 to {MergeArgs.MaxParents} parents, got {parents.Count}");
        if (weights.Length != parents.Count) throw new ArgumentException($"{weights.Length} weights for {parents.Count} parents");
        var psAny = parents.Select(OwnAny).ToArray();
        foreach (var p in psAny) CheckSameLayout(bAny, p);
        var coef = Coefficients(weights);
        for (int t = 0; t < bAny.Tensors.Count; t++)
        {
            CheckStorage(child, t, bAny.Tensors[t].DType, "destination");
            for (int p = 0; p < psAny.Length; p++) CheckStorage(psAny[p], t, bAny.Tensors[t].DType, $"parent {p}");
        }
        if (bAny is not CudaWeightSet b || psAny.Any(p => p is not CudaWeightSet))
        {
            // Some input is in host memory: stream it through the staging buffers into the per-tensor merge kernel.
            var streamer = Streamer(psAny.Prepend(bAny).Count(s => s is CudaHostWeightSet));
            StreamedTensorOps.Merge(streamer, bAny.Tensors, t => Operand(bAny, t), psAny.Select(p => (Func<int, StreamOperand>)(t => Operand(p, t))).ToArray(),
                weights.ToArray(), child.Pointer);
            _streaming!.Synchronize();
            return;
        }
        var ps = psAny.Cast<CudaWeightSet>().ToArray();
        // Small tensors one launch per storage type, large ones one launch each; the arithmetic is the same.
        var plan = MergeGroupPlan.Create(b.Tensors.Select(s => (s.ElementCount, s.DType)).ToArray(), GroupedMergeMaxElements);
        _kernels.MergeGroups(plan, b.Pointer, (t, p) => ps[p].Pointer(t), child.Pointer, coef, ref _mergeSegments, _stream);
        var pointers = new ulong[ps.Length];
        foreach (int t in plan.Single)
        {
            for (int p = 0; p < ps.Length; p++) pointers[p] = ps[p].Pointer(t);
            _kernels.MergeCoefficients(b.Tensors[t].DType, b.Pointer(t), pointers, coef, child.Pointer(t), b.Tensors[t].ElementCount, _stream);
        }
        _stream.Synchronize();
    }

    /// <summary>
    /// cᵢ = wᵢ / Σw with Σw summed in float32 in parent order, as the CPU backend computes them, so
    /// both backends feed the merge identical coefficients.
    /// </summary>
    /// <exception cref="ArgumentException">Σw is zero or not finite.</exception>
    internal static float[] Coefficients(ReadOnlySpan<float> weights)
    {
        float sum = 0;
        foreach (float w in weights) sum += w;
        if (sum == 0 || !float.IsFinite(sum)) throw new ArgumentException($"merge weights sum to {sum}");
        var coef = new float[weights.Length];
        for (int i = 0; i < coef.Length; i++) coef[i] = weights[i] / sum;
        return coef;
    }

    /// <inheritdoc/>
    public IWeightSet TaskVector(IWeightSet model, IWeightSet baseModel)
    {
        Enter();
        var m = OwnAny(model);
        var b = OwnAny(baseModel);
        CheckSameLayout(b, m);
        for (int t = 0; t < b.Tensors.Count; t++) CheckStorage(m, t, b.Tensors[t].DType, "model");
        var tv = new CudaWeightSet(this, _context, b.Tensors.Select(s => s with { DType = DType.F32 }).ToArray());
        try
        {
            if (m is CudaWeightSet md && b is CudaWeightSet bd)
            {
                for (int t = 0; t < b.Tensors.Count; t++)
                    _kernels.TaskVector(b.Tensors[t].DType, md.Pointer(t), bd.Pointer(t), tv.Pointer(t), b.Tensors[t].ElementCount, _stream);
                _stream.Synchronize();
                return tv;
            }
            var streamer = Streamer((m is CudaHostWeightSet ? 1 : 0) + (b is CudaHostWeightSet ? 1 : 0));
            for (int t = 0; t < b.Tensors.Count; t++)
                StreamedTensorOps.TaskVector(streamer, b.Tensors[t].DType, b.Tensors[t].ElementCount, Operand(m, t), Operand(b, t), tv.Pointer(t));
            _streaming!.Synchronize();
            return tv;
        }
        catch
        {
            tv.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    /// <remarks>
    /// A row-major rows×cols weight is the column-major cols×rows matrix Wᵀ, whose singular values
    /// are W's, so τ is decomposed in place without a transpose. The full method runs the range
    /// finder with a sketch as wide as min(m, n) and no power iterations, which spans τ's whole
    /// column space: the result is the thin SVD up to rounding. The randomized method's Gaussian
    /// test matrix is drawn on the device from (seed, generation) and differs from the CPU
    /// backend's sketch, so the two backends agree within the randomized SVD's accuracy, not bit for bit.
    /// </remarks>
    public void MutateSvd(IWeightSet child, IWeightSet baseModel, MutationOptions options, ulong seed, uint generation)
    {
        Enter();
        var c = Own(child, "the mutated child");
        var b = OwnAny(baseModel);
        CheckSameLayout(b, c);
        var groups = Enumerable.Range(0, c.Tensors.Count).Where(i => options.Applies(c.Tensors[i]))
            .GroupBy(i => (c.Tensors[i].Shape[0], c.Tensors[i].Shape[1]));
        foreach (int i in groups.SelectMany(g => g)) CheckStorage(c, i, b.Tensors[i].DType, "child");
        _blas ??= CublasHandle.Create(_context, _stream);
        _solver ??= CusolverHandle.Create(_context, _stream);
        foreach (var g in groups)
        {
            int rows = checked((int)g.Key.Item1), cols = checked((int)g.Key.Item2);
            int m = cols, n = rows; // column-major view
            int r = Math.Min(m, n);
            int k = options.SvdRank == 0 ? r : Math.Min(options.SvdRank, r);
            bool randomized = options.SvdMethod == SvdMethod.Randomized || (options.SvdMethod == SvdMethod.Auto && k <= r / 4);
            var svdOptions = new RandomizedSvdOptions(k, randomized ? options.OversamplingFor(k) : r, randomized ? options.PowerIterations : 0,
                seed ^ (0x9E3779B97F4A7C15UL * (generation + 1UL)));
            int[] members = [.. g];
            int batch = BatchFor(rows, cols, members.Length, svdOptions);
            long mn = (long)m * n;
            using var tau = _context.Allocate<float>(batch * mn);
            for (int start = 0; start < members.Length; start += batch)
            {
                int count = Math.Min(batch, members.Length - start);
                var indices = new uint[count];
                for (int j = 0; j < count; j++)
                {
                    int t = members[start + j];
                    indices[j] = (uint)t;
                    SubtractBase(c, b, t, tau.At(j * mn));
                }
                using (var svd = RandomizedSvd.Compute(_context, _blas, _solver, _kernels, _stream, tau.Pointer, count, m, n, svdOptions))
                    SvdMutation.Apply(_context, _blas, _kernels, _stream, svd, tau.Pointer, indices, seed, generation, (float)options.SvdScaleMax);
                for (int j = 0; j < count; j++)
                {
                    int t = members[start + j];
                    AddBase(c, b, t, tau.At(j * mn));
                }
            }
            _stream.Synchronize();
        }
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Per matrix, on the device: τ = child − base (float32), δ = r ⊙ S by the kernel that draws the CPU
    /// backend's r (sv_rescale), V diag(δ) by scale_columns, one GemmEx τ += (V diag(δ)) Uᵀ in the column-major
    /// view (row-major W is column-major Wᵀ, so the row-major U and Vt buffers are Uᵀ and V as they stand),
    /// then child = base + τ. The host factors are copied to the device for every child (like the experts,
    /// they stay on the host). Not yet run on a GPU: the CPU backend's twin is the checked version.
    /// </remarks>
    public void MutateSvdExpertBasis(IWeightSet child, IWeightSet baseModel, ExpertSvdBasis basis, MutationOptions options, ulong seed, uint generation)
    {
        Enter();
        var c = Own(child, "the mutated child");
        var b = OwnAny(baseModel);
        CheckSameLayout(b, c);
        basis.CheckLayout(c.Tensors);
        var members = Enumerable.Range(0, c.Tensors.Count).Where(i => options.Applies(c.Tensors[i])).ToArray();
        foreach (int i in members) CheckStorage(c, i, b.Tensors[i].DType, "child");
        _blas ??= CublasHandle.Create(_context, _stream);
        foreach (int t in members)
        {
            var f = basis.Require(t);
            long mn = (long)f.Rows * f.Cols;
            using var tau = _context.Allocate<float>(mn);
            using var u = _context.Allocate<float>(f.U.LongLength);
            using var v = _context.Allocate<float>(f.Vt.LongLength);
            using var scaledV = _context.Allocate<float>(f.Vt.LongLength);
            using var s = _context.Allocate<float>(f.Rank);
            using var delta = _context.Allocate<float>(f.Rank);
            u.CopyFrom(f.U);
            v.CopyFrom(f.Vt);
            s.CopyFrom(f.S);
            SubtractBase(c, b, t, tau.Pointer);
            _kernels.RescaleSingularValues(s.Pointer, delta.Pointer, f.Rank, seed, (uint)t, generation, (float)options.SvdScaleMax, _stream);
            // Vt (row-major k×n) is column-major V (n×k): scale its k columns by δ.
            _kernels.ScaleColumns(v.Pointer, delta.Pointer, scaledV.Pointer, f.Cols, f.Rank, 1, _stream);
            // Column-major τᵀ (n×m) += (V diag(δ)) (n×k) · Uᵀ (k×m, the row-major U buffer with leading dimension k).
            _blas.Gemm(false, false, f.Cols, f.Rows, f.Rank, 1f, scaledV.Pointer, GemmType.F32, f.Cols,
                u.Pointer, GemmType.F32, f.Rank, 1f, tau.Pointer, GemmType.F32, f.Cols);
            AddBase(c, b, t, tau.Pointer);
            _stream.Synchronize();
        }
    }

    /// <summary>The largest batch (≤ <paramref name="count"/>) whose workspace fits 90% of the free memory.</summary>
    private int BatchFor(int rows, int cols, int count, RandomizedSvdOptions svd)
    {
        long free = _context.MemoryInfo().Free - RuntimeReserveBytes;
        long limit = free * 9 / 10;
        if (_options.WorkspaceLimitBytes > 0) limit = Math.Min(limit, _options.WorkspaceLimitBytes);
        var plan = new DeviceMemoryPlanOptions(svd.Rank, svd.Oversampling);
        int batch = count;
        while (batch > 1 && DeviceMemoryPlan.BatchWorkspaceBytes(rows, cols, batch, plan) > limit) batch--;
        return batch;
    }

    /// <summary>
    /// Elements per host-drawn noise chunk of the Gaussian mutation (16 MiB of float32); tests lower it
    /// to run several chunks with odd tails on small tensors.
    /// </summary>
    internal int GaussianChunkElements { get; set; } = 1 << 22;

    /// <inheritdoc/>
    /// <remarks>
    /// Bit-identical to the CPU backend. The normals are drawn on the host by the CPU backend's own code
    /// (<see cref="Philox4x32.FillNormal"/>, in parallel) and uploaded chunk by chunk; the kernel
    /// add_scaled_noise then does θ = store(θ + σ·z) with the CPU's two roundings. A device-side draw
    /// would need CUDA's float64 log and cos to equal .NET's (glibc's) to the last bit, which neither
    /// promises, so the normals are not computed on the GPU; the host draw (about as costly as the CPU
    /// backend's own Gaussian mutation) overlaps the previous chunk's kernel. See docs/cuda.md.
    /// </remarks>
    public void MutateGaussian(IWeightSet child, MutationOptions options, ulong seed, uint generation)
    {
        Enter();
        var c = Own(child, "the mutated child");
        float sigma = (float)options.GaussianStd;
        var members = Enumerable.Range(0, c.Tensors.Count).Where(i => options.Applies(c.Tensors[i]) && c.Tensors[i].ElementCount > 0).ToArray();
        if (members.Length == 0) return;
        int chunk = (int)Math.Min(Math.Max(1, GaussianChunkElements), members.Max(i => c.Tensors[i].ElementCount));
        var host = new float[chunk];
        using var noise = _context.Allocate<float>(chunk);
        foreach (int t in members)
        {
            var spec = c.Tensors[t];
            int size = DTypes.SizeOf(spec.DType);
            for (long start = 0; start < spec.ElementCount; start += chunk)
            {
                int count = (int)Math.Min(chunk, spec.ElementCount - start);
                DrawNormals(host, count, seed, (uint)t, generation, start);
                // The previous chunk's kernel reads the device noise buffer until it finishes.
                _stream.Synchronize();
                noise.CopyFrom(host.AsSpan(0, count));
                _kernels.AddScaledNoise(spec.DType, c.Pointer(t) + (ulong)(start * size), noise.Pointer, sigma, count, _stream);
            }
        }
        _stream.Synchronize();
    }

    /// <summary>Normals start … start + count − 1 of the tensor's noise stream into destination[0, count), in parallel slices.</summary>
    private static void DrawNormals(float[] destination, int count, ulong seed, uint tensor, uint generation, long start)
    {
        const int Slice = 1 << 16;
        Parallel.For(0, (count + Slice - 1) / Slice, s =>
        {
            int offset = s * Slice;
            Philox4x32.FillNormal(destination.AsSpan(offset, Math.Min(Slice, count - offset)), seed, tensor, generation, Streams.GaussianNoise, (ulong)(start + offset));
        });
    }

    /// <summary>Releases the cuBLAS/cuSOLVER handles, the stream and the context (weight sets must be disposed first).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _context.MakeCurrent();
        _disposed = true;
        _streamer?.Dispose();
        _streaming?.Dispose();
        _mergeSegments?.Dispose();
        _solver?.Dispose();
        _blas?.Dispose();
        _stream.Dispose();
        _context.Dispose();
    }

    /// <summary>
    /// Makes the context current on the calling thread: the engine awaits with
    /// ConfigureAwait(false), so successive calls may arrive on different thread-pool threads.
    /// </summary>
    private void Enter()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _context.MakeCurrent();
    }

    /// <summary>A device set of this backend; <paramref name="role"/> names it when it is a host set.</summary>
    private CudaWeightSet Own(IWeightSet set, string role) => OwnAny(set) switch
    {
        CudaWeightSet s => s,
        _ => throw new ArgumentException($"{role} is a host weight set (uploaded in streamed mode); the backend writes only device weight sets (those Merge or TaskVector returned)"),
    };

    /// <summary>A device or host set of this backend.</summary>
    private IWeightSet OwnAny(IWeightSet set) => set switch
    {
        CudaWeightSet s when ReferenceEquals(s.Owner, this) => s,
        CudaHostWeightSet h when ReferenceEquals(h.Owner, this) => h,
        _ => throw new ArgumentException($"weight set {set.GetType().Name} does not belong to this CUDA backend ({Name})"),
    };

    /// <summary>Tensor <paramref name="t"/> of a set of this backend as a streamed kernel's input.</summary>
    private static StreamOperand Operand(IWeightSet set, int t) => set is CudaWeightSet d
        ? StreamOperand.OnDevice(d.Pointer(t))
        : StreamOperand.InHost(((CudaHostWeightSet)set).TensorAddress(t));

    /// <summary>
    /// The staging buffers for up to <paramref name="lanes"/> host inputs per kernel, kept between calls
    /// (pinning host memory is slow) and grown when an operation needs more lanes.
    /// </summary>
    private TensorStreamer Streamer(int lanes)
    {
        _streaming ??= new CudaStreamingDevice(_context, _stream, _kernels);
        if (_streamer is null || _streamer.Lanes < lanes)
        {
            int keep = Math.Max(lanes, _streamer?.Lanes ?? 0);
            _streamer?.Dispose();
            _streamer = null;
            _streamer = new TensorStreamer(_streaming, keep, _options.StagingChunkBytes);
        }
        return _streamer;
    }

    /// <summary>tau = child − base for tensor <paramref name="t"/> on the compute stream, the base read in place or streamed.</summary>
    private void SubtractBase(CudaWeightSet child, IWeightSet baseModel, int t, ulong tau)
    {
        var spec = child.Tensors[t];
        if (baseModel is CudaWeightSet b) _kernels.TaskVector(spec.DType, child.Pointer(t), b.Pointer(t), tau, spec.ElementCount, _stream);
        else StreamedTensorOps.TaskVector(Streamer(1), spec.DType, spec.ElementCount, StreamOperand.OnDevice(child.Pointer(t)), Operand(baseModel, t), tau);
    }

    /// <summary>child = base + tau for tensor <paramref name="t"/> on the compute stream, the base read in place or streamed.</summary>
    private void AddBase(CudaWeightSet child, IWeightSet baseModel, int t, ulong tau)
    {
        var spec = child.Tensors[t];
        if (baseModel is CudaWeightSet b) _kernels.ApplyTaskVector(spec.DType, b.Pointer(t), tau, child.Pointer(t), spec.ElementCount, _stream);
        else StreamedTensorOps.ApplyTaskVector(Streamer(1), spec.DType, spec.ElementCount, Operand(baseModel, t), tau, child.Pointer(t));
    }

    private static void CheckStorage(IWeightSet s, int tensor, DType expected, string role)
    {
        var dt = s.Tensors[tensor].DType;
        if (dt != expected)
            throw new NotSupportedException(
                $"tensor '{s.Tensors[tensor].Name}': {role} stores {DTypes.Name(dt)}, the base {DTypes.Name(expected)}; the CUDA kernels need one storage type per tensor (use --device cpu for mixed storage)");
    }

    private static void CheckSameLayout(IWeightSet b, IWeightSet p)
    {
        if (p.Tensors.Count != b.Tensors.Count) throw new ArgumentException($"weight sets differ: {p.Tensors.Count} tensors vs {b.Tensors.Count}");
        for (int i = 0; i < b.Tensors.Count; i++)
            if (p.Tensors[i].Name != b.Tensors[i].Name || !p.Tensors[i].Shape.AsSpan().SequenceEqual(b.Tensors[i].Shape))
                throw new ArgumentException($"tensor {i}: '{p.Tensors[i].Name}' {p.Tensors[i].ShapeText} does not match '{b.Tensors[i].Name}' {b.Tensors[i].ShapeText}");
    }

    private static string MiB(long bytes) => (bytes / 1048576.0).ToString("F1", CultureInfo.InvariantCulture);
}

/// <summary>Device bytes of a run whose weight sets all stay resident on the GPU.</summary>
/// <param name="SetBytes">One weight set.</param>
/// <param name="Sets">Weight sets resident at once.</param>
/// <param name="WorkspaceBytes">The SVD mutation of the largest 2-D tensor at batch 1.</param>
/// <param name="ReserveBytes">CUDA runtime, cuBLAS/cuSOLVER and modules.</param>
public readonly record struct ResidentMemory(long SetBytes, int Sets, long WorkspaceBytes, long ReserveBytes)
{
    /// <summary>Everything together.</summary>
    public long TotalBytes => checked(Sets * SetBytes + WorkspaceBytes + ReserveBytes);
}
