using CycleQD.Cuda.Planning;
using CycleQD.Cuda.Svd;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Tests;

public class DeviceMemoryPlanTests
{
    private static readonly LlamaConfig Llama3_8B = LlamaConfig.Parse("""
        { "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
          "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": false }
        """, "config.json");

    private const long H100 = 85_520_809_984; // the 80 GB card's total memory as the driver reports it

    [Fact]
    public void Llama3_8B_Bf16_FitsAn80GBCard()
    {
        var plan = DeviceMemoryPlan.Create(Llama3_8B, DType.BF16, H100);
        Assert.Equal(8_030_261_248L * 2, plan.WeightSetBytes);
        Assert.Equal(2 * plan.WeightSetBytes, plan.ResidentBytes);
        Assert.Equal(4L * 128256 * 4096 * 2, plan.StagingBytes);
        Assert.True(plan.Fits, plan.Describe());
        Assert.Equal(plan.ResidentBytes + plan.StagingBytes + plan.PeakWorkspaceBytes + plan.ReserveBytes, plan.PeakBytes);
        plan.EnsureFits("H100");
    }

    [Fact]
    public void Llama3_8B_Groups_AreTheFiveShapes_WithAllMatricesCounted()
    {
        var plan = DeviceMemoryPlan.Create(Llama3_8B, DType.BF16, H100);
        var g = plan.Groups.ToDictionary(x => (x.Rows, x.Cols));
        Assert.Equal(5, g.Count);
        Assert.Equal(64, g[(4096, 4096)].Count);     // q, o
        Assert.Equal(64, g[(1024, 4096)].Count);     // k, v
        Assert.Equal(64, g[(14336, 4096)].Count);    // gate, up
        Assert.Equal(32, g[(4096, 14336)].Count);    // down
        Assert.Equal(2, g[(128256, 4096)].Count);    // embed, lm_head
        Assert.Equal("gate_proj, up_proj", g[(14336, 4096)].Names);
        // 80 GB leaves room to mutate every matrix of a shape in one batch.
        Assert.All(plan.Groups, x => Assert.Equal(x.Count, x.Batch));
        // The largest: 64 gate/up matrices, tau alone 64 x 14336 x 4096 float32 = 14 GiB.
        var largest = plan.Groups.MaxBy(x => x.WorkspaceBytes)!;
        Assert.Equal((14336, 4096), (largest.Rows, largest.Cols));
        Assert.InRange(plan.PeakWorkspaceBytes / (double)(1L << 30), 16.6, 16.8);
        Assert.InRange(plan.PeakBytes / (double)(1L << 30), 57.4, 57.6);
    }

    [Fact]
    public void BatchWorkspace_IsTheSumOfItsBuffers()
    {
        var o = new DeviceMemoryPlanOptions(Rank: 8, Oversampling: 2);
        // rows 6, cols 10 -> m = 10, n = 6, k = 6 (capped), l = 6.
        long floats = 3L * 10 * 6 + RandomizedSvd.WorkspaceFloats(3, 10, 6, 6) + 3L * (10 * 6 + 6) + 2L * 10 * 6;
        Assert.Equal(floats * 4, DeviceMemoryPlan.BatchWorkspaceBytes(6, 10, 3, o));
        Assert.Equal(6L * 6 + 3L * (2 * 10 * 6 + 2 * 6 * 6 + 36 + 12), RandomizedSvd.WorkspaceFloats(3, 10, 6, 6));
    }

    [Fact]
    public void SmallerCard_ShrinksBatchesBeforeFailing()
    {
        var plan = DeviceMemoryPlan.Create(Llama3_8B, DType.BF16, 48L << 30);
        Assert.True(plan.Fits, plan.Describe());
        Assert.Contains(plan.Groups, x => x.Batch < x.Count);
    }

    [Fact]
    public void CardTooSmall_SaysHowMuchIsNeededAndWhatItHas()
    {
        var plan = DeviceMemoryPlan.Create(Llama3_8B, DType.BF16, 24L << 30);
        Assert.False(plan.Fits);
        var e = Assert.Throws<DeviceMemoryException>(() => plan.EnsureFits("NVIDIA L4"));
        Assert.StartsWith("NVIDIA L4 has 24.00 GiB free but merging and mutating this model needs ", e.Message);
        Assert.Contains("base + child 29.92 GiB", e.Message);
        Assert.Contains("use a larger card or the CPU backend", e.Message);
    }

    [Fact]
    public void UnsupportedStorage_IsRejected()
    {
        var e = Assert.Throws<NotSupportedException>(() => DeviceMemoryPlan.Create(Llama3_8B, DType.I8, H100));
        Assert.Contains("I8", e.Message);
    }

    [Fact]
    public void TiedEmbeddings_HaveNoLmHeadMatrix()
    {
        var tied = Llama3_8B with { TieWordEmbeddings = true };
        var g = DeviceMemoryPlan.Create(tied, DType.F32, H100).Groups.Single(x => x.Rows == 128256);
        Assert.Equal(1, g.Count);
        Assert.Equal("embed_tokens", g.Names);
    }
}
