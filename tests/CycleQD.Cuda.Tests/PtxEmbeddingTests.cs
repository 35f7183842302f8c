using CycleQD.Cuda;
using CycleQD.Testing;

namespace CycleQD.Cuda.Tests;

public class PtxEmbeddingTests
{
    [Fact]
    public void EmbeddedPtx_HasEveryKernelForCompute80And90()
    {
        var modules = PtxCatalog.List();
        if (modules.Count == 0 && NvccLocator.Find() is null)
            Assert.Skip("this build had no nvcc, so no PTX was built or embedded (./build.sh setup installs it)");

        var kernels = Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "native", "kernels"), "*.cu")
            .Select(Path.GetFileNameWithoutExtension).ToList();
        Assert.NotEmpty(kernels);
        foreach (string? kernel in kernels)
            foreach (string arch in new[] { "80", "90" })
            {
                var m = Assert.Single(modules, p => p.Name == $"{kernel}.compute_{arch}.ptx");
                Assert.Equal($"sm_{arch}", m.Target);
                Assert.Contains(".entry", PtxCatalog.Read(m.Name));
            }
    }

    [Fact]
    public void MergeModule_ExportsOneEntryPerStorageType()
    {
        if (PtxCatalog.List().Count == 0) Assert.Skip("no PTX embedded in this build (no nvcc at build time)");
        string ptx = PtxCatalog.Read("merge.compute_90.ptx");
        foreach (var entry in new[] { "merge_f32", "merge_f16", "merge_bf16" })
            Assert.Contains($".entry {entry}(", ptx);
    }

    [Fact]
    public void Read_UnknownModule_SaysItIsNotEmbedded()
    {
        var e = Assert.Throws<FileNotFoundException>(() => PtxCatalog.Read("nope.ptx"));
        Assert.Contains("nope.ptx", e.Message);
    }
}
