using CycleQD.Cuda;
using CycleQD.Testing;

namespace CycleQD.Cuda.Tests;

public class PtxEmbeddingTests
{
    internal static void RequirePtx()
    {
        MachineRequirement.RequireCudaToolkit(PtxCatalog.List().Count > 0 || NvccLocator.Find() is not null,
            "this build had no nvcc, so no PTX was built or embedded (./build.sh setup installs it)");
    }

    [Fact]
    public void EmbeddedPtx_HasEveryKernelForCompute80And90()
    {
        RequirePtx();
        var modules = PtxCatalog.List();
        var kernels = Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "native", "kernels"), "*.cu")
            .Select(Path.GetFileNameWithoutExtension).ToList();
        Assert.Equal(["convert", "merge", "mutate", "taskvec"], kernels.Order());
        foreach (string? kernel in kernels)
            foreach (string arch in new[] { "80", "90" })
            {
                var m = Assert.Single(modules, p => p.Name == $"{kernel}.compute_{arch}.ptx");
                Assert.Equal($"sm_{arch}", m.Target);
                Assert.Contains(".entry", PtxCatalog.Read(m.Name));
            }
    }

    [Theory]
    [InlineData("merge", "merge_f32", "merge_f16", "merge_bf16")]
    [InlineData("taskvec", "task_vector_f32", "task_vector_f16", "task_vector_bf16", "apply_task_vector_f32", "apply_task_vector_f16", "apply_task_vector_bf16")]
    [InlineData("convert", "convert_f32_to_bf16", "convert_bf16_to_f32", "convert_f32_to_f16", "convert_f16_to_f32")]
    [InlineData("mutate", "sv_rescale", "scale_columns_f32", "gaussian_fill_f32")]
    public void Module_ExportsEveryExternCEntry(string module, params string[] entries)
    {
        RequirePtx();
        foreach (string arch in new[] { "80", "90" })
        {
            string ptx = PtxCatalog.Read($"{module}.compute_{arch}.ptx");
            foreach (var entry in entries)
                Assert.Contains($".entry {entry}(", ptx);
        }
    }

    [Fact]
    public void Kernels_UseNoLocalMemory()
    {
        // A by-value argument struct indexed at run time is copied to local memory: slow, and a
        // sign that a loop over parents lost its unrolling.
        RequirePtx();
        foreach (var m in PtxCatalog.List())
            Assert.DoesNotContain(".local", PtxCatalog.Read(m.Name));
    }

    [Fact]
    public void Read_UnknownModule_SaysItIsNotEmbedded()
    {
        var e = Assert.Throws<FileNotFoundException>(() => PtxCatalog.Read("nope.ptx"));
        Assert.Contains("nope.ptx", e.Message);
    }

    [Theory]
    [InlineData(90, "merge.compute_90.ptx")]
    [InlineData(100, "merge.compute_90.ptx")]
    [InlineData(89, "merge.compute_80.ptx")]
    [InlineData(80, "merge.compute_80.ptx")]
    public void ModuleFor_PicksTheHighestTargetNotAboveTheGpu(int cc, string expected)
    {
        RequirePtx();
        Assert.Equal(expected, PtxCatalog.ModuleFor("merge", cc));
    }

    [Fact]
    public void ModuleFor_OlderGpu_SaysWhichTargetsExist()
    {
        RequirePtx();
        var e = Assert.Throws<CudaUnavailableException>(() => PtxCatalog.ModuleFor("merge", 75));
        Assert.Contains("compute_80/compute_90", e.Message);
        Assert.Contains("compute 7.5", e.Message);
    }

    [Fact]
    public void ModuleFor_UnknownModule_SaysItIsNotEmbedded()
    {
        var e = Assert.Throws<CudaUnavailableException>(() => PtxCatalog.ModuleFor("nope", 90));
        Assert.Contains("'nope' is not embedded", e.Message);
    }
}
