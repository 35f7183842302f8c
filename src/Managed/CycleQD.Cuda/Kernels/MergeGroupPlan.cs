using CycleQD.Tensors;

namespace CycleQD.Cuda.Kernels;

/// <summary>
/// Which tensors of a weight set one merge launch covers together (native/kernels/merge_group.cuh):
/// tensors of at most <see cref="MaxGroupedElements"/> elements are grouped by storage type, in
/// their order in the set, each group one launch of merge_group_* whose blocks are laid out tensor
/// after tensor (<see cref="Segment.FirstBlock"/>); larger tensors keep one merge_* launch each.
/// Also the CPU model of the kernel's block → tensor → element mapping, which the tests compare with
/// the kernel header's own code (run on the host by kernel_host_check).
/// </summary>
internal sealed class MergeGroupPlan
{
    /// <summary>Threads per block of merge_group_* (kGroupThreads).</summary>
    public const int Threads = 256;

    /// <summary>
    /// Default size limit of a grouped tensor: 16 M elements (a 4096×4096 weight). The per-tensor kernel
    /// reaches 0.93–0.99 of copy bandwidth from 14336×4096 up, but 0.80 at 4096×4096 and 0.55 at
    /// 1024×4096 (docs/perf.md): below the limit launch and tail costs are what one launch saves.
    /// </summary>
    public const long DefaultMaxGroupedElements = 1L << 24;

    /// <summary>One tensor inside a group.</summary>
    /// <param name="Tensor">Index in the weight set.</param>
    /// <param name="Elements">Its element count (&gt; 0).</param>
    /// <param name="FirstBlock">Blocks of the group's tensors before it.</param>
    public readonly record struct Segment(int Tensor, long Elements, long FirstBlock);

    /// <summary>Tensors of one storage type merged by one launch of <see cref="Blocks"/> blocks.</summary>
    public sealed record Group(DType DType, IReadOnlyList<Segment> Segments, long Blocks);

    private MergeGroupPlan(long maxGroupedElements, IReadOnlyList<int> single, IReadOnlyList<Group> groups)
    {
        MaxGroupedElements = maxGroupedElements;
        Single = single;
        Groups = groups;
    }

    /// <summary>The size limit the plan was made with (0: nothing grouped).</summary>
    public long MaxGroupedElements { get; }

    /// <summary>Tensors merged one launch each, in set order (empty tensors appear nowhere: there is nothing to merge).</summary>
    public IReadOnlyList<int> Single { get; }

    /// <summary>The groups, in the order their first tensor appears.</summary>
    public IReadOnlyList<Group> Groups { get; }

    /// <summary>Elements of <paramref name="dtype"/> in one 16-byte vector: what one thread of merge_group_* handles.</summary>
    public static int VectorElements(DType dtype) => 16 / DTypes.SizeOf(dtype);

    /// <summary>Blocks a tensor of <paramref name="elements"/> elements of <paramref name="dtype"/> occupies in a group.</summary>
    public static long BlocksFor(long elements, DType dtype)
    {
        long perBlock = (long)VectorElements(dtype) * Threads;
        return (elements + perBlock - 1) / perBlock;
    }

    /// <summary>
    /// Plans a merge of <paramref name="tensors"/> (element count and storage type per tensor). A group
    /// never exceeds the grid's 2³¹ − 1 blocks: a type whose small tensors would is split into several groups.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxGroupedElements"/> is negative.</exception>
    public static MergeGroupPlan Create(IReadOnlyList<(long Elements, DType DType)> tensors, long maxGroupedElements = DefaultMaxGroupedElements)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxGroupedElements);
        var single = new List<int>();
        var open = new Dictionary<DType, (List<Segment> Segments, long Blocks)>();
        var order = new List<(DType DType, List<Segment> Segments)>();
        var closed = new List<Group>();
        for (int t = 0; t < tensors.Count; t++)
        {
            var (n, dtype) = tensors[t];
            if (n <= 0) continue;
            if (n > maxGroupedElements)
            {
                single.Add(t);
                continue;
            }
            long blocks = BlocksFor(n, dtype);
            if (!open.TryGetValue(dtype, out var g) || g.Blocks + blocks > int.MaxValue)
            {
                g = (new List<Segment>(), 0);
                order.Add((dtype, g.Segments));
            }
            g.Segments.Add(new Segment(t, n, g.Blocks));
            open[dtype] = (g.Segments, g.Blocks + blocks);
        }
        foreach (var (dtype, segments) in order)
        {
            var last = segments[^1];
            closed.Add(new Group(dtype, segments, last.FirstBlock + BlocksFor(last.Elements, dtype)));
        }
        return new MergeGroupPlan(maxGroupedElements, single, closed);
    }

    /// <summary>The segment owning <paramref name="block"/>: find_segment's binary search, on the host.</summary>
    public static int FindSegment(IReadOnlyList<Segment> segments, long block)
    {
        int lo = 0, hi = segments.Count - 1;
        while (lo < hi)
        {
            int mid = lo + (hi - lo + 1) / 2;
            if (segments[mid].FirstBlock <= block) lo = mid;
            else hi = mid - 1;
        }
        return lo;
    }

    /// <summary>Elements [Begin, End) of <paramref name="segment"/> for thread <paramref name="thread"/> of <paramref name="block"/> (group_thread_range; empty when End ≤ Begin).</summary>
    public static (long Begin, long End) ThreadRange(Segment segment, long block, int thread, int vector)
    {
        long begin = ((block - segment.FirstBlock) * Threads + thread) * vector;
        return (begin, Math.Min(begin + vector, segment.Elements));
    }
}
