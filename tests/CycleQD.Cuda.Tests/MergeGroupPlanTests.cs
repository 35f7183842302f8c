using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CycleQD.Cuda.Kernels;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Cuda.Tests;

/// <summary>
/// The grouped merge's host planning and its block → tensor → element mapping, on the CPU: the C#
/// model (<see cref="MergeGroupPlan"/>) and the kernel header's own code (merge_group.cuh, run on the
/// host by kernel_host_check) must cover every element of every tensor exactly once, and agree.
/// </summary>
public class MergeGroupPlanTests
{
    private static readonly (long, DType)[] Mix =
    [
        (4096L * 4096, DType.BF16), (1024L * 4096, DType.BF16), (14336L * 4096, DType.BF16), (4096, DType.F32),
        (0, DType.BF16), (1, DType.BF16), (7, DType.F16), (4096L * 4096 + 1, DType.F32), (3, DType.F32), (2049, DType.BF16),
    ];

    [Fact]
    public void Create_GroupsSmallTensorsByStorageType_AndLeavesLargeOnesSingle()
    {
        var plan = MergeGroupPlan.Create(Mix);
        Assert.Equal([2, 7], plan.Single);
        Assert.Equal([DType.BF16, DType.F32, DType.F16], plan.Groups.Select(g => g.DType));
        Assert.Equal([0, 1, 5, 9], plan.Groups[0].Segments.Select(s => s.Tensor));
        Assert.Equal([3, 8], plan.Groups[1].Segments.Select(s => s.Tensor));
        Assert.Equal([6], plan.Groups[2].Segments.Select(s => s.Tensor));
        // Every non-empty tensor exactly once; the empty one nowhere.
        var all = plan.Single.Concat(plan.Groups.SelectMany(g => g.Segments.Select(s => s.Tensor))).Order();
        Assert.Equal(Enumerable.Range(0, Mix.Length).Where(i => i != 4), all);
        // First blocks are the prefix sums of the block counts (bf16: 8 elements per thread, 2048 per block).
        Assert.Equal([0L, 8192, 8192 + 2048, 8192 + 2048 + 1], plan.Groups[0].Segments.Select(s => s.FirstBlock));
        Assert.Equal(8192 + 2048 + 1 + 2, plan.Groups[0].Blocks);
    }

    [Fact]
    public void Create_WithLimitZero_MergesEveryTensorAlone()
    {
        var plan = MergeGroupPlan.Create(Mix, 0);
        Assert.Empty(plan.Groups);
        Assert.Equal(Enumerable.Range(0, Mix.Length).Where(i => i != 4), plan.Single);
        Assert.Throws<ArgumentOutOfRangeException>(() => MergeGroupPlan.Create(Mix, -1));
    }

    [Fact]
    public void Create_SplitsAGroupThatWouldExceedTheGrid()
    {
        // 2^40 bf16 elements are 2^29 blocks: three fit one grid of at most 2^31 − 1 blocks, a fourth would not.
        var huge = Enumerable.Repeat((1L << 40, DType.BF16), 5).ToArray();
        var plan = MergeGroupPlan.Create(huge, long.MaxValue);
        Assert.Equal(2, plan.Groups.Count);
        Assert.All(plan.Groups, g => Assert.True(g.Blocks <= int.MaxValue, $"{g.Blocks} blocks"));
        Assert.Equal([3, 2], plan.Groups.Select(g => g.Segments.Count));
        Assert.Equal(0, plan.Groups[1].Segments[0].FirstBlock);
    }

    public static TheoryData<DType> StorageTypes => new() { DType.F32, DType.F16, DType.BF16 };

    [Theory]
    [MemberData(nameof(StorageTypes))]
    public void Mapping_CoversEveryElementOfEveryTensorExactlyOnce(DType dtype)
    {
        long[] sizes = [1, 7, 8, 1023, 1024, 1025, 2047, 2048, 2049, 4099, 65536, 3];
        var plan = MergeGroupPlan.Create(sizes.Select(n => (n, dtype)).ToArray());
        var group = Assert.Single(plan.Groups);
        int vec = MergeGroupPlan.VectorElements(dtype);
        var hits = sizes.Select(n => new byte[n]).ToArray();
        for (long block = 0; block < group.Blocks; block++)
        {
            int s = MergeGroupPlan.FindSegment(group.Segments, block);
            var seg = group.Segments[s];
            Assert.InRange(block, seg.FirstBlock, seg.FirstBlock + MergeGroupPlan.BlocksFor(seg.Elements, dtype) - 1);
            bool any = false;
            for (int t = 0; t < MergeGroupPlan.Threads; t++)
            {
                var (begin, end) = MergeGroupPlan.ThreadRange(seg, block, t, vec);
                for (long i = begin; i < end; i++) hits[seg.Tensor][i]++;
                any |= begin < end;
            }
            Assert.True(any, $"block {block} of tensor {seg.Tensor} has no work");
        }
        for (int t = 0; t < sizes.Length; t++)
        {
            int bad = Array.FindIndex(hits[t], h => h != 1);
            Assert.True(bad < 0, $"tensor {t} ({sizes[t]} elements): element {bad} covered {(bad < 0 ? 1 : hits[t][bad])} times");
        }
    }

    [Fact]
    public unsafe void Segments_CarryPointersCountsAndFirstBlocks()
    {
        var plan = MergeGroupPlan.Create([(10, DType.BF16), (5000, DType.F32), (20, DType.BF16)]);
        var d = CudaKernels.Segments(plan, t => 0x1000UL * (ulong)(t + 1), (t, p) => 0x100000UL * (ulong)(p + 1) + (ulong)t, 3, t => 0x7000UL + (ulong)t);
        Assert.Equal(3, d.Length);
        Assert.Equal((0x1000UL, 10L, 0L), (d[0].Base, d[0].N, d[0].FirstBlock));
        Assert.Equal((0x3000UL, 20L, 1L, 0x7002UL), (d[1].Base, d[1].N, d[1].FirstBlock, d[1].Out));
        Assert.Equal((0x2000UL, 5000L, 0L), (d[2].Base, d[2].N, d[2].FirstBlock));
        Assert.Equal(0x300002UL, d[1].Parents[2]);
        Assert.Equal(0UL, d[1].Parents[3]);
        Assert.Throws<ArgumentException>(() => CudaKernels.Segments(plan, _ => 0, (_, _) => 0, 9, _ => 0));
    }

    // --- the kernel header's code, run on the host by kernel_host_check ---

    private static string[] HostCheck(string kind)
    {
        string exe = Path.Combine(TestPaths.RepoRoot, "artifacts", "native", "bin", "kernel_host_check");
        MachineRequirement.RequireCudaToolkit(File.Exists(exe), "artifacts/native/bin/kernel_host_check is not built (no nvcc at build time; ./build.sh setup installs it)");
        using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(exe) { RedirectStandardOutput = true })!;
        string text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        return text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith(kind + " ", StringComparison.Ordinal)).ToArray();
    }

    private static long[] Numbers(string line) => line.Split(' ').Skip(1).Select(x => long.Parse(x, CultureInfo.InvariantCulture)).ToArray();

    [Fact]
    public void KernelSegmentLayout_MatchesTheManagedStruct()
    {
        var n = Numbers(Assert.Single(HostCheck("segment_layout")));
        Assert.Equal(Unsafe.SizeOf<MergeSegment>(), (int)n[0]);
        Assert.Equal(
            [(int)Marshal.OffsetOf<MergeSegment>(nameof(MergeSegment.Base)), (int)Marshal.OffsetOf<MergeSegment>("Parents"),
             (int)Marshal.OffsetOf<MergeSegment>(nameof(MergeSegment.Out)), (int)Marshal.OffsetOf<MergeSegment>(nameof(MergeSegment.N)),
             (int)Marshal.OffsetOf<MergeSegment>(nameof(MergeSegment.FirstBlock))],
            n.Skip(1).Select(x => (int)x));
    }

    [Theory]
    [InlineData(4, DType.F32)]
    [InlineData(8, DType.BF16)]
    public void KernelMapping_EqualsTheManagedModel_AndCoversEveryElementOnce(int vec, DType dtype)
    {
        var segs = HostCheck("gseg").Select(Numbers).Where(n => n[0] == vec).ToArray();
        var plan = MergeGroupPlan.Create(segs.Select(n => (n[2], dtype)).ToArray());
        var group = Assert.Single(plan.Groups);
        Assert.Equal(segs.Select(n => n[3]), group.Segments.Select(s => s.FirstBlock));

        var blocks = HostCheck("gblock").Select(Numbers).Where(n => n[0] == vec).ToArray();
        Assert.Equal(group.Blocks, blocks.Length);
        foreach (var b in blocks) Assert.Equal(MergeGroupPlan.FindSegment(group.Segments, b[1]), (int)b[2]);

        var expected = new List<(long, long, long)>();
        for (long block = 0; block < group.Blocks; block++)
        {
            var seg = group.Segments[MergeGroupPlan.FindSegment(group.Segments, block)];
            for (int t = 0; t < MergeGroupPlan.Threads; t++)
            {
                var (begin, end) = MergeGroupPlan.ThreadRange(seg, block, t, vec);
                if (begin < end) expected.Add((seg.Tensor, begin, end));
            }
        }
        var ranges = HostCheck("grange").Select(Numbers).Where(n => n[0] == vec).Select(n => (n[1], n[2], n[3])).ToList();
        Assert.Equal(expected, ranges);
        var hits = segs.Select(n => new int[n[2]]).ToArray();
        foreach (var (s, begin, end) in ranges)
            for (long i = begin; i < end; i++) hits[s][i]++;
        Assert.All(hits, h => Assert.All(h, c => Assert.Equal(1, c)));
    }
}
