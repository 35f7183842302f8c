using CycleQD.Core;
using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Core.Synthetic;
using CycleQD.Cpu;
using CycleQD.Cpu.Linalg;
using CycleQD.Tensors;

namespace CycleQD.Runs.Tests;

/// <summary>The engine hands the backend the SVD of the generation's quality-task expert.</summary>
public class ExpertBasisEngineTests
{
    /// <summary>The CPU backend, recording which basis each expert-basis mutation got.</summary>
    private sealed class RecordingBackend : IComputeBackend
    {
        private readonly CpuComputeBackend _cpu = new();
        public List<(uint Generation, string Task)> Calls { get; } = [];
        public int ChildBasisCalls { get; private set; }
        public string Name => _cpu.Name;
        public IWeightSet Upload(IHostTensorSource source) => _cpu.Upload(source);
        public void Download(IWeightSet set, int index, Span<byte> destination) => _cpu.Download(set, index, destination);
        public IWeightSet Merge(IWeightSet baseModel, IReadOnlyList<IWeightSet> parents, ReadOnlySpan<float> weights) => _cpu.Merge(baseModel, parents, weights);
        public void MergeInto(IWeightSet destination, IWeightSet baseModel, IReadOnlyList<IWeightSet> parents, ReadOnlySpan<float> weights) =>
            _cpu.MergeInto(destination, baseModel, parents, weights);
        public IWeightSet TaskVector(IWeightSet model, IWeightSet baseModel) => _cpu.TaskVector(model, baseModel);
        public void MutateSvd(IWeightSet child, IWeightSet baseModel, MutationOptions options, ulong seed, uint generation)
        {
            ChildBasisCalls++;
            _cpu.MutateSvd(child, baseModel, options, seed, generation);
        }
        public void MutateSvdExpertBasis(IWeightSet child, IWeightSet baseModel, ExpertSvdBasis basis, MutationOptions options, ulong seed, uint generation)
        {
            Calls.Add((generation, basis.Task));
            _cpu.MutateSvdExpertBasis(child, baseModel, basis, options, seed, generation);
        }
        public void MutateGaussian(IWeightSet child, MutationOptions options, ulong seed, uint generation) => _cpu.MutateGaussian(child, options, seed, generation);
        public void Dispose() => _cpu.Dispose();
    }

    private static CycleQDOptions Options(int interval) => new()
    {
        Tasks = ["a", "b", "c"],
        Bins = 4,
        Seed = 9,
        QualityTaskInterval = interval,
        Mutation = new MutationOptions(Basis: MutationBasis.Expert),
    };

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Run_BasisExpert_EachGenerationMutatesInItsQualityTasksExpertBasis(int interval)
    {
        var options = Options(interval);
        var problem = new SyntheticProblem(options.Tasks, new SyntheticProblemOptions(Layers: 2, Rows: 24, Cols: 16, DType: DType.BF16, Seed: 5));
        using var backend = new RecordingBackend();
        using var baseSet = backend.Upload(problem.BaseModel());
        var experts = options.Tasks.Select((t, k) => new Expert(t, backend.Upload(problem.Expert(k)))).ToList();
        var bases = experts.ToDictionary(e => e.Name, e => ExpertSvdFactorization.Compute(e.Name, backend, e.Weights, baseSet, options.Mutation));
        using var engine = new CycleQDEngine(options, backend, baseSet, experts, problem, new NonFiniteChildTests.MemoryEliteStore(), null, bases);
        await engine.InitializeAsync(TestContext.Current.CancellationToken);
        await engine.RunAsync(9, TestContext.Current.CancellationToken);

        Assert.Equal(0, backend.ChildBasisCalls);
        Assert.Equal(Enumerable.Range(0, 9).Select(g => ((uint)g, options.Tasks[options.QualityTaskOf(g)])), backend.Calls);
        foreach (var e in experts) e.Weights.Dispose();
    }

    [Fact]
    public void Engine_BasisExpertWithoutATasksSvd_OneClearError()
    {
        var options = Options(1);
        var problem = new SyntheticProblem(options.Tasks, new SyntheticProblemOptions(Layers: 1, Rows: 8, Cols: 8, DType: DType.F32, Seed: 5));
        using var backend = new RecordingBackend();
        using var baseSet = backend.Upload(problem.BaseModel());
        var experts = options.Tasks.Select((t, k) => new Expert(t, backend.Upload(problem.Expert(k)))).ToList();
        var bases = experts.Take(2).ToDictionary(e => e.Name, e => ExpertSvdFactorization.Compute(e.Name, backend, e.Weights, baseSet, options.Mutation));
        var e = Assert.Throws<ConfigurationException>(() => new CycleQDEngine(options, backend, baseSet, experts, problem, new NonFiniteChildTests.MemoryEliteStore(), null, bases));
        Assert.Equal("mutation.basis expert: no SVD of the expert of task 'c' was given", e.Message);
        foreach (var x in experts) x.Weights.Dispose();
    }
}
