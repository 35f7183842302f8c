using CycleQD.Core.Compute;
using CycleQD.Cuda.Backend;
using CycleQD.Cuda.Planning;
using CycleQD.Cuda.Svd;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Tests;

public class StreamingMemoryPlanTests
{
    private static readonly LlamaConfig Llama3_8B = LlamaConfig.Parse("""
        { "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
          "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": false }
        """, "config.json");

    private const long H100 = 85_520_809_984; // the 80 GB card's total memory as the driver reports it
    private const long GiB = 1L << 30;

    [Fact]
    public void Llama3_8B_Bf16_Batch64x2048_FitsAn80GBCard_WithEveryTermFromTheConfig()
    {
        var c = Llama3_8B;
        var evaluator = EvaluatorMemory.ForLlama(c, DType.BF16, batch: 64, tokens: 2048);
        // KV cache: 2 (k, v) x layers x kv heads x head dim x 2 bytes x batch x tokens.
        long kv = 2L * c.NumHiddenLayers * c.NumKeyValueHeads * c.HeadDim * 2 * 64 * 2048;
        Assert.Equal(kv, evaluator.KvCacheBytes);
        Assert.Equal(16 * GiB, kv);
        long perToken = 3L * c.HiddenSize + 2L * c.NumKeyValueHeads * c.HeadDim + 3L * c.IntermediateSize;
        Assert.Equal(64L * 2048 * perToken * 2 + 64L * c.VocabSize * 4, evaluator.ActivationBytes);

        var plan = StreamingMemoryPlan.Create(c, DType.BF16, H100, evaluator);
        Assert.Equal(c.ParameterCount * 2, plan.ChildBytes);
        Assert.Equal(3, plan.Lanes);
        Assert.Equal(2L * 3 * (64L << 20), plan.StagingBytes);
        Assert.Equal(1 * GiB, plan.RuntimeReserveBytes);
        Assert.Equal(plan.ChildBytes + plan.StagingBytes + plan.PeakWorkspaceBytes + evaluator.KvCacheBytes + evaluator.ActivationBytes + plan.RuntimeReserveBytes,
            plan.PeakBytes);
        Assert.True(plan.Fits, plan.Describe());
        plan.EnsureFits("H100");
        // Every shape still mutates in one batch: the largest is the 64 gate/up matrices (tau alone 14 GiB).
        Assert.All(plan.Groups, g => Assert.Equal(g.Count, g.Batch));
        var largest = plan.Groups.MaxBy(g => g.WorkspaceBytes)!;
        Assert.Equal((14336, 4096), (largest.Rows, largest.Cols));
        Assert.Equal(DeviceMemoryPlan.BatchWorkspaceBytes(14336, 4096, 64, new DeviceMemoryPlanOptions(256, 16)), plan.PeakWorkspaceBytes);
        Assert.InRange(plan.PeakBytes / (double)GiB, 63.0, 63.2);
    }

    [Fact]
    public void Llama3_8B_Bf16_ResidentModeWithThreeExperts_DoesNotFitAn80GBCard()
    {
        // Base + 3 experts + child + 2 parents resident: 7 x 14.96 GiB.
        var tensors = Enumerable.Range(0, 1).Select(_ => new TensorSpec("all", DType.BF16, [Llama3_8B.ParameterCount])).ToArray();
        var need = CudaComputeBackend.ResidentNeed(tensors, 3 + CudaComputeBackend.RunSetsBesidesExperts, rank: 256, oversampling: 16);
        Assert.Equal(7 * Llama3_8B.ParameterCount * 2, need.Sets * need.SetBytes);
        Assert.True(need.TotalBytes > H100);
        var e = Assert.Throws<DeviceMemoryException>(() => CudaComputeBackend.EnsureResidentFits(tensors, 7, 256, 16, H100, "H100"));
        Assert.Contains("7 resident weight sets", e.Message);
    }

    [Fact]
    public void SmallerCard_ShrinksMutationBatchesBeforeFailing()
    {
        var plan = StreamingMemoryPlan.Create(Llama3_8B, DType.BF16, 56L * GiB, EvaluatorMemory.ForLlama(Llama3_8B, DType.BF16, 64, 2048));
        Assert.True(plan.Fits, plan.Describe());
        Assert.Contains(plan.Groups, g => g.Batch < g.Count);
    }

    [Fact]
    public void CardTooSmall_EnsureFitsNamesEveryNumber()
    {
        var plan = StreamingMemoryPlan.Create(Llama3_8B, DType.BF16, 40L * GiB, EvaluatorMemory.ForLlama(Llama3_8B, DType.BF16, 64, 2048));
        Assert.False(plan.Fits);
        var e = Assert.Throws<DeviceMemoryException>(() => plan.EnsureFits("NVIDIA A100-SXM4-40GB"));
        Assert.StartsWith("NVIDIA A100-SXM4-40GB has 40.00 GiB free but streaming this model (BF16 weights) needs ", e.Message);
        Assert.Contains("child 14.96 GiB", e.Message);
        Assert.Contains("staging 0.38 GiB = 2 x 3 lanes x 0.06 GiB", e.Message);
        Assert.Contains("evaluator KV cache 16.00 GiB", e.Message);
        Assert.Contains("evaluator activations 14.03 GiB", e.Message);
        Assert.Contains("runtime reserve 1.00 GiB", e.Message);
        Assert.Contains("mutation workspace ", e.Message);
        Assert.Contains("use a smaller evaluation batch or length", e.Message);
    }

    [Fact]
    public void ExplicitActivationAllowance_ReplacesTheEstimate()
    {
        var e = EvaluatorMemory.ForLlama(Llama3_8B, DType.F16, batch: 2, tokens: 10, activationBytes: 123);
        Assert.Equal(123, e.ActivationBytes);
        Assert.Equal(2L * 32 * 8 * 128 * 2 * 2 * 10, e.KvCacheBytes);
        Assert.Throws<ArgumentOutOfRangeException>(() => EvaluatorMemory.ForLlama(Llama3_8B, DType.F16, batch: 0, tokens: 10));
    }

    [Fact]
    public void ACacheCopiedEachStep_CountsTwoCaches()
    {
        var inPlace = EvaluatorMemory.ForLlama(Llama3_8B, DType.BF16, 64, 2048);
        var copied = EvaluatorMemory.ForLlama(Llama3_8B, DType.BF16, 64, 2048, cacheCopies: 2);
        Assert.Equal(2 * inPlace.KvCacheBytes, copied.KvCacheBytes);
        Assert.Equal(inPlace.ActivationBytes, copied.ActivationBytes);
        // 64 × 2,048 tokens of Llama-3-8B in bfloat16: 16 GiB once.
        Assert.Equal(16L << 30, inPlace.KvCacheBytes);
        Assert.Throws<ArgumentOutOfRangeException>(() => EvaluatorMemory.ForLlama(Llama3_8B, DType.BF16, 64, 2048, cacheCopies: 3));
    }

    [Fact]
    public void TwoChildrenInFlight_CountTwoWeightSets_AndTheMessageSaysSo()
    {
        var evaluator = EvaluatorMemory.ForLlama(Llama3_8B, DType.BF16, 64, 2048);
        var one = StreamingMemoryPlan.Create(Llama3_8B, DType.BF16, 40L * GiB, evaluator);
        var two = StreamingMemoryPlan.Create(Llama3_8B, DType.BF16, 40L * GiB, evaluator, new StreamingPlanOptions(Children: 2));
        Assert.Equal(2 * one.ChildBytes, two.ChildBytes);
        Assert.Equal(one.ChildBytes + two.StagingBytes, two.MergePeakBytes - one.ChildBytes);
        var e = Assert.Throws<DeviceMemoryException>(() => two.EnsureFits("card"));
        Assert.Contains("2 children 29.92 GiB", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => StreamingMemoryPlan.Create(Llama3_8B, DType.BF16, H100, evaluator, new StreamingPlanOptions(Children: 0)));
    }

    [Fact]
    public void ParentsOutOfRange_AreRejected()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() =>
            StreamingMemoryPlan.Create(Llama3_8B, DType.BF16, H100, EvaluatorMemory.None, new StreamingPlanOptions(Parents: 9)));
        Assert.Contains("1 to 8 parents", ex.Message);
    }

    [Fact]
    public void BackendOptions_BadStagingChunk_IsRejectedNamingTheOption()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new CudaBackendOptions(WeightResidency.Streamed, StagingChunkBytes: 1000).Validate());
        Assert.Contains("StagingChunkBytes", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new CudaBackendOptions(WorkspaceLimitBytes: -1).Validate());
        new CudaBackendOptions(WeightResidency.Streamed).Validate();
    }
}
