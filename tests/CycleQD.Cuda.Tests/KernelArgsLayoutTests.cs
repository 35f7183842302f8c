using System.Globalization;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using CycleQD.Cuda.Kernels;

namespace CycleQD.Cuda.Tests;

/// <summary>The managed argument structs must match the kernels' by-value struct parameters byte for byte.</summary>
public partial class KernelArgsLayoutTests
{
    public static TheoryData<string, string, Type> Kernels => new()
    {
        { "merge", "merge_bf16", typeof(MergeArgs) },
        { "merge", "merge_f32", typeof(MergeArgs) },
        { "merge", "merge_group_bf16", typeof(MergeGroupArgs) },
        { "merge", "merge_group_f16", typeof(MergeGroupArgs) },
        { "merge", "merge_group_f32", typeof(MergeGroupArgs) },
        { "taskvec", "task_vector_bf16", typeof(TaskVectorArgs) },
        { "taskvec", "apply_task_vector_f16", typeof(ApplyTaskVectorArgs) },
        { "convert", "convert_f32_to_bf16", typeof(ConvertArgs) },
        { "convert", "convert_f16_to_f32", typeof(ConvertArgs) },
        { "mutate", "sv_rescale", typeof(RescaleArgs) },
        { "mutate", "scale_columns_f32", typeof(ScaleColumnsArgs) },
        { "mutate", "gaussian_fill_f32", typeof(GaussianArgs) },
        { "mutate", "add_scaled_noise_f32", typeof(ScaledNoiseArgs) },
        { "mutate", "add_scaled_noise_f16", typeof(ScaledNoiseArgs) },
        { "mutate", "add_scaled_noise_bf16", typeof(ScaledNoiseArgs) },
    };

    [Theory]
    [MemberData(nameof(Kernels))]
    public void ArgsStruct_SizeMatchesPtxParam(string module, string entry, Type args)
    {
        PtxEmbeddingTests.RequirePtx();
        int size = (int)typeof(Unsafe).GetMethod(nameof(Unsafe.SizeOf))!.MakeGenericMethod(args).Invoke(null, null)!;
        foreach (string arch in new[] { "80", "90" })
        {
            string ptx = PtxCatalog.Read($"{module}.compute_{arch}.ptx");
            var decl = Regex.Match(ptx, $@"\.entry {entry}\(\s*\.param \.align (\d+) \.b8 {entry}_param_0\[(\d+)\]\s*\)");
            Assert.True(decl.Success, $"{entry} in {module}.compute_{arch}.ptx does not take exactly one by-value struct");
            Assert.Equal(int.Parse(decl.Groups[2].Value, CultureInfo.InvariantCulture), size);
            Assert.Equal(8, int.Parse(decl.Groups[1].Value, CultureInfo.InvariantCulture));
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void EveryParamLoad_StartsAtAFieldOffset(string module, string entry, Type args)
    {
        // Each ld.param in the kernel reads at an offset; if the C# fields were laid out
        // differently from the C struct, some offset would fall inside or between C# fields.
        PtxEmbeddingTests.RequirePtx();
        var offsets = FieldOffsets(args);
        string ptx = PtxCatalog.Read($"{module}.compute_90.ptx");
        var loads = Regex.Matches(ptx, $@"ld\.param[\w.]*\s+[^\[]*\[{entry}_param_0(?:\+(\d+))?\]")
            .Select(m => m.Groups[1].Success ? int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : 0).Distinct().ToList();
        Assert.NotEmpty(loads);
        foreach (int off in loads)
            Assert.True(offsets.Contains(off), $"{entry} reads its argument at +{off}, which is no field start of {args.Name} ({string.Join(", ", offsets.Order())})");
    }

    [Fact]
    public void MergeArgs_FieldOffsets_MatchTheCStruct()
    {
        // struct MergeArgs { const void* base; const void* parents[8]; float coef[8]; void* out; long long n; int num_parents; }
        Assert.Equal(0, (int)Marshal.OffsetOf<MergeArgs>(nameof(MergeArgs.Base)));
        Assert.Equal(8, (int)Marshal.OffsetOf<MergeArgs>("Parents"));
        Assert.Equal(72, (int)Marshal.OffsetOf<MergeArgs>("Coef"));
        Assert.Equal(104, (int)Marshal.OffsetOf<MergeArgs>(nameof(MergeArgs.Out)));
        Assert.Equal(112, (int)Marshal.OffsetOf<MergeArgs>(nameof(MergeArgs.N)));
        Assert.Equal(120, (int)Marshal.OffsetOf<MergeArgs>(nameof(MergeArgs.NumParents)));
        Assert.Equal(128, Unsafe.SizeOf<MergeArgs>());
    }

    /// <summary>Start offsets of every field and of every element of fixed buffers.</summary>
    private static HashSet<int> FieldOffsets(Type t)
    {
        var set = new HashSet<int>();
        foreach (var f in t.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
        {
            int off = (int)Marshal.OffsetOf(t, f.Name);
            var fixedAttr = f.GetCustomAttribute<FixedBufferAttribute>();
            if (fixedAttr is null) { set.Add(off); continue; }
            int es = Marshal.SizeOf(fixedAttr.ElementType);
            for (int i = 0; i < fixedAttr.Length; i++) set.Add(off + i * es);
        }
        return set;
    }
}
