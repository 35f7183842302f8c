using System.Runtime.InteropServices;
using CycleQD.Core.Compute;
using CycleQD.Cpu;
using CycleQD.Cuda.Planning;
using CycleQD.Cuda.Streaming;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Tests;

/// <summary>
/// The streaming schedule (<see cref="TensorStreamer"/>, <see cref="StreamedTensorOps"/>) on the simulated
/// device: host memory with a hard byte budget, copies that run only when fenced, and the CPU backend's arithmetic.
/// </summary>
public sealed class StreamedMergeTests
{
    private const long Chunk = 4096; // the smallest chunk: every tensor above 1,024 float32 spans several

    /// <summary>A model in native host memory (fixed addresses, like a mapped file).</summary>
    private sealed unsafe class HostModel : IDisposable
    {
        private readonly nint[] _data;

        public HostModel(TensorSpec[] specs, int seed)
        {
            Specs = specs;
            Source = new InMemoryTensorSource();
            _data = new nint[specs.Length];
            var rnd = new Random(seed);
            for (int t = 0; t < specs.Length; t++)
            {
                var values = new float[specs[t].ElementCount];
                for (int i = 0; i < values.Length; i++) values[i] = (float)(rnd.NextDouble() * 4 - 2);
                var bytes = new byte[specs[t].ByteLength];
                DTypeConversion.FromSingle(values, specs[t].DType, bytes);
                Source.Add(specs[t], bytes);
                _data[t] = (nint)NativeMemory.AlignedAlloc((nuint)bytes.Length, 64);
                bytes.CopyTo(new Span<byte>((void*)_data[t], bytes.Length));
            }
        }

        public TensorSpec[] Specs { get; }
        public InMemoryTensorSource Source { get; }
        public StreamOperand Operand(int t) => StreamOperand.InHost(_data[t]);

        public void Dispose()
        {
            foreach (var p in _data) NativeMemory.AlignedFree((void*)p);
        }
    }

    /// <summary>Tensors of mixed sizes (a few elements to several chunks, not multiples of the chunk) and shapes; one storage type, or a random one per tensor.</summary>
    private static TensorSpec[] Layout(int count, DType? dtype, int seed)
    {
        var rnd = new Random(seed);
        DType[] types = [DType.F32, DType.F16, DType.BF16];
        return Enumerable.Range(0, count).Select(i =>
        {
            var dt = dtype ?? types[rnd.Next(3)];
            long[] shape = (i % 3) switch
            {
                0 => [rnd.Next(1, 48), rnd.Next(1, 90)],
                1 => [rnd.Next(1, 7000)],
                _ => [rnd.Next(1, 5)],
            };
            return new TensorSpec($"t{i}", dt, shape);
        }).ToArray();
    }

    /// <summary>The CPU backend's MergeInto, tensor by tensor, as bytes.</summary>
    private static byte[][] CpuMerge(HostModel baseModel, HostModel[] parents, float[] weights)
    {
        using var cpu = new CpuComputeBackend();
        using var b = cpu.Upload(baseModel.Source);
        var ps = parents.Select(p => cpu.Upload(p.Source)).ToArray();
        try
        {
            using var other = new HostModel(baseModel.Specs, 12345);
            using var child = cpu.Upload(other.Source); // holds other values: MergeInto must overwrite all of them
            cpu.MergeInto(child, b, ps, weights);
            return Download(cpu, child);
        }
        finally
        {
            foreach (var p in ps) p.Dispose();
        }
    }

    private static byte[][] Download(IComputeBackend backend, IWeightSet set) =>
        Enumerable.Range(0, set.Tensors.Count).Select(t =>
        {
            var bytes = new byte[set.Tensors[t].ByteLength];
            backend.Download(set, t, bytes);
            return bytes;
        }).ToArray();

    /// <summary>Allocates the child on the device (poisoned: 0xFF is NaN in every float type), merges into it through a fresh streamer, reads it back and frees it.</summary>
    private static unsafe byte[][] StreamedMerge(SimulatedStreamingDevice device, TensorSpec[] specs, Func<int, StreamOperand> baseOf,
        HostModel[] parents, float[] weights, int lanes, long chunk = Chunk)
    {
        var child = specs.Select(s => device.Allocate(s.ByteLength, "the child")).ToArray();
        try
        {
            for (int t = 0; t < specs.Length; t++) new Span<byte>((void*)child[t], (int)specs[t].ByteLength).Fill(0xFF);
            using (var streamer = new TensorStreamer(device, lanes, chunk))
            {
                StreamedTensorOps.Merge(streamer, specs, baseOf, parents.Select(p => (Func<int, StreamOperand>)p.Operand).ToArray(), weights, t => child[t]);
                device.Synchronize();
            }
            return specs.Select((s, t) => new ReadOnlySpan<byte>((void*)child[t], (int)s.ByteLength).ToArray()).ToArray();
        }
        finally
        {
            foreach (var c in child) device.Free(c);
        }
    }

    private static float[] Weights(int parents) => Enumerable.Range(0, parents).Select(p => 0.3f + 0.7f * p).ToArray();

    private static StreamingPlanOptions MergeOnly(int parents, long chunk = Chunk) => new(Parents: parents, ChunkBytes: chunk, RuntimeReserveBytes: 0);

    [Theory]
    [InlineData(DType.F32, 1)]
    [InlineData(DType.F32, 2)]
    [InlineData(DType.F32, 8)]
    [InlineData(DType.F16, 1)]
    [InlineData(DType.F16, 2)]
    [InlineData(DType.F16, 8)]
    [InlineData(DType.BF16, 1)]
    [InlineData(DType.BF16, 2)]
    [InlineData(DType.BF16, 8)]
    public void StreamedMerge_AllInputsOnHost_EqualsCpuBackendBitForBit(DType dtype, int parentCount)
    {
        var specs = Layout(14, dtype, seed: parentCount);
        using var b = new HostModel(specs, 100);
        var parents = Enumerable.Range(0, parentCount).Select(p => new HostModel(specs, 200 + p)).ToArray();
        try
        {
            var w = Weights(parentCount);
            using var device = new SimulatedStreamingDevice(long.MaxValue);
            var streamed = StreamedMerge(device, specs, b.Operand, parents, w, lanes: 1 + parentCount);
            var expected = CpuMerge(b, parents, w);
            for (int t = 0; t < specs.Length; t++) Assert.True(expected[t].AsSpan().SequenceEqual(streamed[t]), $"tensor {specs[t].Name} {specs[t].ShapeText} differs");
            Assert.True(device.CopiesRun > specs.Length, $"{device.CopiesRun} copies for {specs.Length} tensors: the tensors were not streamed in chunks");
        }
        finally
        {
            foreach (var p in parents) p.Dispose();
        }
    }

    [Fact]
    public void StreamedMerge_ManyMixedTensors_BudgetOfThePlanIsNeverExceeded_AndThePeakIsThePlansMergePeak()
    {
        var specs = Layout(150, dtype: null, seed: 7);
        Assert.Equal(3, specs.Select(s => s.DType).Distinct().Count());
        using var b = new HostModel(specs, 1);
        using var p0 = new HostModel(specs, 2);
        using var p1 = new HostModel(specs, 3);
        var plan = StreamingMemoryPlan.ForTensors(specs, long.MaxValue, EvaluatorMemory.None, MergeOnly(2));
        Assert.Equal(specs.Sum(s => s.ByteLength), plan.ChildBytes);
        Assert.Equal(2 * 3 * Chunk, plan.StagingBytes);

        // The budget is exactly the plan's prediction: one byte more in use at any moment would throw.
        using var device = new SimulatedStreamingDevice(plan.MergePeakBytes);
        var streamed = StreamedMerge(device, specs, b.Operand, [p0, p1], [1f, 3f], lanes: 3);
        Assert.Equal(plan.MergePeakBytes, device.Memory.PeakBytes);
        Assert.Equal(0, device.Memory.InUseBytes);
        var expected = CpuMerge(b, [p0, p1], [1f, 3f]);
        for (int t = 0; t < specs.Length; t++) Assert.True(expected[t].AsSpan().SequenceEqual(streamed[t]), $"tensor {specs[t].Name} {specs[t].DType} differs");
    }

    [Fact]
    public void StreamedMerge_OneByteUnderThePlan_IsRefusedByTheBudget()
    {
        var specs = Layout(20, DType.BF16, seed: 8);
        using var b = new HostModel(specs, 1);
        using var p0 = new HostModel(specs, 2);
        var plan = StreamingMemoryPlan.ForTensors(specs, long.MaxValue, EvaluatorMemory.None, MergeOnly(1));
        using var device = new SimulatedStreamingDevice(plan.MergePeakBytes - 1);
        var e = Assert.Throws<DeviceMemoryException>(() => StreamedMerge(device, specs, b.Operand, [p0], [1f], lanes: 2));
        Assert.Contains("budget exceeded", e.Message);
        Assert.Equal(0, device.Memory.InUseBytes);
    }

    [Fact]
    public void Plan_OverTheDeviceBudget_IsRefusedBeforeAnyAllocation_NamingEveryNumber()
    {
        var specs = Layout(30, DType.F16, seed: 9);
        var options = new StreamingPlanOptions(Parents: 2, ChunkBytes: Chunk, RuntimeReserveBytes: 1000);
        var evaluator = new EvaluatorMemory(KvCacheBytes: 5000, ActivationBytes: 700);
        var fits = StreamingMemoryPlan.ForTensors(specs, long.MaxValue, evaluator, options);
        using var device = new SimulatedStreamingDevice(fits.PeakBytes - 1);
        var plan = StreamingMemoryPlan.ForTensors(specs, device.Memory.BudgetBytes, evaluator, options);
        Assert.False(plan.Fits);
        var e = Assert.Throws<DeviceMemoryException>(() => plan.EnsureFits("simulated device"));
        Assert.Equal(0, device.Memory.Allocations);
        Assert.StartsWith("simulated device has ", e.Message);
        foreach (string part in new[] { "child ", "staging ", "2 x 3 lanes", "mutation workspace ", "evaluator KV cache ", "evaluator activations ", "runtime reserve " })
            Assert.Contains(part, e.Message);
        // The peak is the sum of its parts, and the same plan on the full budget fits.
        Assert.Equal(plan.ChildBytes + plan.StagingBytes + plan.PeakWorkspaceBytes + 5000 + 700 + 1000, plan.PeakBytes);
        Assert.True(fits.Fits);
    }

    [Fact]
    public void StagingBuffers_AreReused_AllocationsDoNotGrowWithTheTensorCount()
    {
        (long Device, int Pinned, int Copies) Run(int tensors)
        {
            var specs = Layout(tensors, DType.F32, seed: 11);
            using var b = new HostModel(specs, 1);
            using var p0 = new HostModel(specs, 2);
            using var device = new SimulatedStreamingDevice(long.MaxValue);
            StreamedMerge(device, specs, b.Operand, [p0], [1f], lanes: 2);
            return (device.Memory.Allocations - tensors, device.PinnedAllocations, device.CopiesRun);
        }
        var few = Run(6);
        var many = Run(120);
        Assert.Equal(2 * 2, few.Device);   // 2 slots x 2 lanes, besides the child's own buffers
        Assert.Equal(few.Device, many.Device);
        Assert.Equal(2 * 2, few.Pinned);
        Assert.Equal(few.Pinned, many.Pinned);
        Assert.True(many.Copies > 10 * few.Copies, $"{many.Copies} copies for 120 tensors, {few.Copies} for 6");
    }

    [Fact]
    public unsafe void StreamedMerge_BaseOnTheDeviceParentsOnTheHost_EqualsCpuBackend()
    {
        var specs = Layout(25, DType.BF16, seed: 12);
        using var b = new HostModel(specs, 1);
        var parents = new[] { new HostModel(specs, 2), new HostModel(specs, 3), new HostModel(specs, 4) };
        try
        {
            using var device = new SimulatedStreamingDevice(long.MaxValue);
            var onDevice = specs.Select((s, t) =>
            {
                ulong p = device.Allocate(s.ByteLength, "the base");
                b.Source.GetBytes(s.Name).CopyTo(new Span<byte>((void*)p, (int)s.ByteLength));
                return p;
            }).ToArray();
            var w = Weights(3);
            // Three host inputs per kernel: a streamer with three lanes suffices, one with two is refused.
            var streamed = StreamedMerge(device, specs, t => StreamOperand.OnDevice(onDevice[t]), parents, w, lanes: 3);
            var expected = CpuMerge(b, parents, w);
            for (int t = 0; t < specs.Length; t++) Assert.True(expected[t].AsSpan().SequenceEqual(streamed[t]), $"tensor {specs[t].Name} differs");
            var e = Assert.Throws<ArgumentException>(() => StreamedMerge(device, specs, b.Operand, parents, w, lanes: 3));
            Assert.Contains("4 host operands for a streamer of 3 lanes", e.Message);
        }
        finally
        {
            foreach (var p in parents) p.Dispose();
        }
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public unsafe void StreamedTaskVector_EqualsCpuBackend_AndApplyingItWithAHostBaseEqualsADeviceBase(DType dtype)
    {
        var specs = Layout(12, dtype, seed: 13);
        using var model = new HostModel(specs, 1);
        using var b = new HostModel(specs, 2);
        using var device = new SimulatedStreamingDevice(long.MaxValue);
        using var cpu = new CpuComputeBackend();
        using var cm = cpu.Upload(model.Source);
        using var cb = cpu.Upload(b.Source);
        using var expected = cpu.TaskVector(cm, cb);
        using var streamer = new TensorStreamer(device, 2, Chunk);
        for (int t = 0; t < specs.Length; t++)
        {
            long n = specs[t].ElementCount;
            ulong tau = device.Allocate(n * sizeof(float), "tau");
            ulong viaHost = device.Allocate(specs[t].ByteLength, "theta");
            ulong viaDevice = device.Allocate(specs[t].ByteLength, "theta");
            ulong baseOnDevice = device.Allocate(specs[t].ByteLength, "the base");
            b.Source.GetBytes(specs[t].Name).CopyTo(new Span<byte>((void*)baseOnDevice, (int)specs[t].ByteLength));
            new Span<byte>((void*)tau, (int)(n * sizeof(float))).Fill(0xFF);
            StreamedTensorOps.TaskVector(streamer, dtype, n, model.Operand(t), b.Operand(t), tau);
            device.Synchronize();
            var want = new byte[n * sizeof(float)];
            cpu.Download(expected, t, want);
            Assert.True(want.AsSpan().SequenceEqual(new ReadOnlySpan<byte>((void*)tau, want.Length)), $"task vector of {specs[t].Name} differs");

            StreamedTensorOps.ApplyTaskVector(streamer, dtype, n, b.Operand(t), tau, viaHost);
            StreamedTensorOps.ApplyTaskVector(streamer, dtype, n, StreamOperand.OnDevice(baseOnDevice), tau, viaDevice);
            device.Synchronize();
            Assert.True(new ReadOnlySpan<byte>((void*)viaHost, (int)specs[t].ByteLength).SequenceEqual(new ReadOnlySpan<byte>((void*)viaDevice, (int)specs[t].ByteLength)));
            foreach (var p in new[] { tau, viaHost, viaDevice, baseOnDevice }) device.Free(p);
        }
    }

    [Fact]
    public void Streamer_ChunkNotAMultipleOf4096_IsRejected()
    {
        using var device = new SimulatedStreamingDevice(long.MaxValue);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new TensorStreamer(device, 1, 5000));
        Assert.Contains("multiple of 4096", e.Message);
        Assert.Equal(0, device.Memory.Allocations);
    }

    [Fact]
    public void Ledger_ResetPeak_StartsTheHighWaterMarkAtTheBytesInUse()
    {
        var ledger = new DeviceMemoryLedger(1000);
        ledger.Add(600, "a");
        ledger.Add(300, "b");
        ledger.Remove(600);
        Assert.Equal(900, ledger.PeakBytes);
        ledger.ResetPeak();
        Assert.Equal(300, ledger.PeakBytes);
        var e = Assert.Throws<DeviceMemoryException>(() => ledger.Add(701, "c"));
        Assert.Contains("701 bytes for c: 300 bytes in use of a budget of 1000", e.Message);
        Assert.Equal(300, ledger.InUseBytes);
    }
}
