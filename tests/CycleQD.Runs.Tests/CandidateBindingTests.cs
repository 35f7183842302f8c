using System.Text.Json.Nodes;
using CycleQD.Core.Compute;
using CycleQD.Cpu;
using CycleQD.Cuda;
using CycleQD.Runs.Families;
using CycleQD.Runs.Families.Llama;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

/// <summary>
/// How a candidate reaches the evaluator's session: bound where the backend keeps it (no copy), or
/// downloaded into host arrays; both give the same scores, and the time is measured per candidate.
/// </summary>
public sealed class CandidateBindingTests
{
    /// <summary>The CPU backend with its weight sets' addresses hidden: the evaluator must download them.</summary>
    private sealed class AddressHidingBackend(CpuComputeBackend inner) : IComputeBackend
    {
        public sealed class HiddenSet(IWeightSet set) : IWeightSet
        {
            public IWeightSet Inner { get; } = set;
            public IReadOnlyList<TensorSpec> Tensors => Inner.Tensors;
            public void Dispose() => Inner.Dispose();
        }

        public string Name => inner.Name;
        public IWeightSet Upload(IHostTensorSource source) => new HiddenSet(inner.Upload(source));
        public void Download(IWeightSet set, int index, Span<byte> destination) => inner.Download(((HiddenSet)set).Inner, index, destination);
        public IWeightSet Merge(IWeightSet baseModel, IReadOnlyList<IWeightSet> parents, ReadOnlySpan<float> weights) => throw new NotSupportedException();
        public void MergeInto(IWeightSet destination, IWeightSet baseModel, IReadOnlyList<IWeightSet> parents, ReadOnlySpan<float> weights) => throw new NotSupportedException();
        public IWeightSet TaskVector(IWeightSet model, IWeightSet baseModel) => throw new NotSupportedException();
        public void MutateSvd(IWeightSet child, IWeightSet baseModel, MutationOptions options, ulong seed, uint generation) => throw new NotSupportedException();
        public void MutateSvdExpertBasis(IWeightSet child, IWeightSet baseModel, ExpertSvdBasis basis, MutationOptions options, ulong seed, uint generation) => throw new NotSupportedException();
        public void MutateGaussian(IWeightSet child, MutationOptions options, ulong seed, uint generation) => throw new NotSupportedException();
        public void Dispose() { }
    }

    private static IWeightSet Load(IComputeBackend backend, string folder)
    {
        using var model = SafetensorsModel.Open(folder);
        return backend.Upload(new SafetensorsHostSource(model));
    }

    [Fact]
    public async Task CpuBackendFloat32Candidates_AreBoundInPlace_AndScoreAsDownloadedOnes()
    {
        using var dir = new TempDir();
        var config = ExperimentConfig.Load(Experiments.Write(dir, "exp.yaml", FinalStageTests.TinyExperiment(1)));
        var family = ModelFamilies.Of(config);
        var splits = family.MakeSplits(config);
        using var cpu = new CpuComputeBackend();
        var hiding = new AddressHidingBackend(cpu);
        string models = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        var ct = TestContext.Current.CancellationToken;

        using var evaluator = (LlamaCandidateEvaluator)family.OpenEvaluator(config, splits, cpu);
        foreach (var expert in new[] { "expert-code", "expert-os" })
        {
            using var direct = Load(cpu, Path.Combine(models, expert));
            using var hidden = Load(hiding, Path.Combine(models, expert));
            double[] inPlace = await evaluator.EvaluateAsync(cpu, direct, ct);
            Assert.Equal("in place", evaluator.LastBinding);
            Assert.NotNull(evaluator.TakeBindSeconds(direct));
            double[] copied = await evaluator.EvaluateAsync(hiding, hidden, ct);
            Assert.Equal("host arrays", evaluator.LastBinding);
            Assert.NotNull(evaluator.TakeBindSeconds(hidden));
            Assert.Equal(copied, inPlace);
            Assert.Contains(inPlace, s => s > 0); // the experts score: the binding is not blank
        }
    }

    [Fact]
    public async Task EvaluationLanes_ReachTheModel_AndScoreAsOneLane()
    {
        using var dir = new TempDir();
        string yaml = FinalStageTests.TinyExperiment(1).Replace("evaluation: { split: valid, limit: 8,", "evaluation: { split: valid, limit: 20, lanes: LANES,");
        Assert.Contains("lanes: LANES", yaml);
        using var cpu = new CpuComputeBackend();
        var ct = TestContext.Current.CancellationToken;
        using var expert = Load(cpu, Path.Combine(TestPaths.RepoRoot, "models", "tinyskills", "expert-db"));
        var scores = new Dictionary<int, double[]>();
        foreach (int lanes in new[] { 1, 3 })
        {
            var config = ExperimentConfig.Load(Experiments.Write(dir, $"exp{lanes}.yaml", yaml.Replace("LANES", lanes.ToString())));
            var family = ModelFamilies.Of(config);
            using var evaluator = (LlamaCandidateEvaluator)family.OpenEvaluator(config, family.MakeSplits(config), cpu);
            Assert.Equal(lanes, evaluator.Lanes);
            scores[lanes] = await evaluator.EvaluateAsync(cpu, expert, ct);
        }
        Assert.Equal(scores[1], scores[3]);
        Assert.Contains(scores[1], s => s > 0);
    }

    [Fact]
    public async Task SamCandidates_AreBoundInPlaceOnTheCpu_AndScoreAsDownloadedOnes()
    {
        using var dir = new TempDir();
        var config = ExperimentConfig.Load(SamRunTests.Setup(dir, 1));
        var family = ModelFamilies.Of(config);
        using var cpu = new CpuComputeBackend();
        var hiding = new AddressHidingBackend(cpu);
        var ct = TestContext.Current.CancellationToken;
        using var evaluator = (Families.Sam.SamCandidateEvaluator)family.OpenEvaluator(config, family.MakeSplits(config), cpu);
        foreach (var expert in new[] { "expert-a", "expert-b" })
        {
            using var direct = Load(cpu, dir.File(expert));
            using var hidden = Load(hiding, dir.File(expert));
            double[] inPlace = await evaluator.EvaluateAsync(cpu, direct, ct);
            Assert.Equal("in place", evaluator.LastBinding);
            Assert.NotNull(evaluator.TakeBindSeconds(direct));
            double[] copied = await evaluator.EvaluateAsync(hiding, hidden, ct);
            Assert.Equal("host arrays", evaluator.LastBinding);
            Assert.Equal(copied, inPlace);
            Assert.Contains(inPlace, s => s > 0);
        }
    }

    [Fact]
    public async Task Bf16Candidates_OnTheCpu_GoThroughHostArrays()
    {
        using var dir = new TempDir();
        // A synthesized bf16 set on the float32 CPU graph: the candidate's storage is not the graph's type.
        string set = dir.File("set");
        Onnx.Synthesis.LlamaSynthesizer.Write(set, new Onnx.Synthesis.SynthesisOptions { Shape = "tiny", Experts = 1, Threads = 2 },
            cancellationToken: TestContext.Current.CancellationToken);
        string models = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        var config = ExperimentConfig.Load(Experiments.Write(dir, "exp.yaml", $"""
            name: bf16
            seed: 1
            generations: 1
            tasks: [tinyskills/code]
            model: {"{"} base: {set}/base, experts: {"{"} tinyskills/code: {set}/expert-1 {"}"} {"}"}
            evaluation: {"{"} split: valid, limit: 2, tinyskills: {models} {"}"}
            archive: {"{"} bins: 4, bounds: {"{"} tinyskills/code: [0, 1] {"}"} {"}"}
            final_merge: {"{"} enabled: false {"}"}
            """));
        var family = ModelFamilies.Of(config);
        using var cpu = new CpuComputeBackend();
        using var evaluator = (LlamaCandidateEvaluator)family.OpenEvaluator(config, family.MakeSplits(config), cpu);
        using var expert = Load(cpu, Path.Combine(set, "expert-1"));
        Assert.Equal(DType.BF16, expert.Tensors[0].DType);
        var scores = await evaluator.EvaluateAsync(cpu, expert, TestContext.Current.CancellationToken);
        Assert.Single(scores);
        Assert.Equal("host arrays", evaluator.LastBinding);
    }

    [Fact]
    public async Task RunMetrics_RecordTheBindTimeOfEveryChild()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", FinalStageTests.TinyExperiment(2).Replace("final_merge: { grid: [0.5, 1.0], rounds: 1 }", "final_merge: { enabled: false }"));
        using (var s = RunSession.Start(exp, dir.File("run"), null, null, ComputeDevice.Cpu))
        {
            await s.InitializeAsync(TestContext.Current.CancellationToken);
            Assert.True(await s.RunAsync(TestContext.Current.CancellationToken));
        }
        var lines = File.ReadAllLines(Path.Combine(dir.File("run"), "metrics.jsonl"));
        Assert.Equal(2, lines.Length);
        foreach (var line in lines)
        {
            var timing = JsonNode.Parse(line)!["timing"]!;
            double bind = timing["bind_s"]!.GetValue<double>();
            Assert.InRange(bind, 0, timing["evaluate_s"]!.GetValue<double>());
        }
    }

    /// <summary>On a GPU: the CUDA backend's bf16 child is bound to ONNX Runtime's CUDA provider in place.</summary>
    [Fact]
    public async Task CudaRun_BindsTheChildOnTheGpu_WithoutACopy()
    {
        var status = CudaDeviceProbe.Probe();
        if (!status.Available) Assert.Skip("needs a GPU: " + status.Reason);
        if (PtxCatalog.List().Count == 0) Assert.Skip("no PTX embedded in this build (no nvcc at build time)");
        using var dir = new TempDir();
        string exp = Experiments.Synthesized(dir, generations: 2, limit: 4);
        using (var s = RunSession.Start(exp, dir.File("run"), null, null, ComputeDevice.Cuda))
        {
            await s.InitializeAsync(TestContext.Current.CancellationToken);
            Assert.True(await s.RunAsync(TestContext.Current.CancellationToken));
        }
        foreach (var line in File.ReadAllLines(Path.Combine(dir.File("run"), "metrics.jsonl")))
        {
            var timing = JsonNode.Parse(line)!["timing"]!;
            Assert.NotNull(timing["bind_s"]);
            // The backend's device high-water mark: at least the child it built.
            Assert.True(timing["peak_device_bytes"]!.GetValue<long>() > 0);
        }
    }

    /// <summary>On a GPU: a SAM run's encoder and decoder run on the CUDA provider, reading each child in place.</summary>
    [Fact]
    public async Task CudaSamRun_BindsTheChildOnTheGpu()
    {
        var status = CudaDeviceProbe.Probe();
        if (!status.Available) Assert.Skip("needs a GPU: " + status.Reason);
        if (PtxCatalog.List().Count == 0) Assert.Skip("no PTX embedded in this build (no nvcc at build time)");
        using var dir = new TempDir();
        string exp = SamRunTests.Setup(dir, 2);
        using (var s = RunSession.Start(exp, dir.File("run"), null, null, ComputeDevice.Cuda))
        {
            await s.InitializeAsync(TestContext.Current.CancellationToken);
            Assert.True(await s.RunAsync(TestContext.Current.CancellationToken));
        }
        foreach (var line in File.ReadAllLines(Path.Combine(dir.File("run"), "metrics.jsonl")))
            Assert.NotNull(JsonNode.Parse(line)!["timing"]!["bind_s"]);
    }
}
