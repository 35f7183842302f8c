using System.Globalization;
using CycleQD.Core.Compute;
using CycleQD.Cuda;
using CycleQD.Cuda.Backend;
using CycleQD.Runs;
using CycleQD.Runs.Families;
using CycleQD.Runs.Final;
using CycleQD.Tensors;

namespace CycleQD.Cli.Commands.Run;

/// <summary>
/// `run --dry-run`: every check a run makes before it writes (experiment, models, task environments),
/// then what the run will cost; nothing is written.
/// </summary>
internal static class RunDryRun
{
    /// <summary>An H100's memory as the driver reports it (79.65 GiB): the card a GPU plan is shown for where no GPU is at hand.</summary>
    internal const long ReferenceCardBytes = 85_520_809_984;

    public static int Execute(string experimentPath, int? generations, ulong? seed, TextWriter o, RunOverrides? overrides = null,
        ComputeDevice device = ComputeDevice.Auto, Func<(string Name, long FreeBytes)?>? gpu = null)
    {
        var (config, family, splits) = RunSession.Prepare(experimentPath, seed, overrides: overrides);
        var inv = CultureInfo.InvariantCulture;
        int n = config.Options.Tasks.Count;
        int gens = generations ?? config.Generations;
        o.WriteLine($"dry run of {Path.GetFullPath(experimentPath)}: experiment, models and task environments checked; nothing written");
        o.WriteLine($"family {family.Name}; tasks {string.Join(", ", config.Options.Tasks)}; seed {config.Options.Seed}; {gens} generations");
        int bins = config.Options.Bins;
        o.WriteLine(config.Options.Cycle
            ? $"archives: one per task, the quality task cycling, {Math.Pow(bins, n - 1).ToString("N0", inv)} cells each ({bins} bins on {n - 1} behaviour axes)"
            : $"archives: one (without the cycle), quality = mean of the {n} tasks, {Math.Pow(bins, n).ToString("N0", inv)} cells ({bins} bins on {n} behaviour axes)");

        var costs = family.Costs(config, splits);
        var table = new TextTable("task", "search split", "samples", "report split", "model calls ≤", "generated tokens ≤", "counted as");
        foreach (var c in costs)
        {
            var s = splits[c.Task];
            string report = s.ReportIds is { } r ? $"{s.Report} ({r.Count})" : s.Report;
            table.Add(c.Task, s.Search, c.Samples.ToString(inv), report, c.ModelCalls.ToString("N0", inv), c.MaxGeneratedTokens.ToString("N0", inv), c.Note);
        }
        o.WriteLine("per candidate:");
        table.Write(o);
        long calls = costs.Sum(c => c.ModelCalls), tokens = costs.Sum(c => c.MaxGeneratedTokens);
        int evaluations = n + gens;
        o.WriteLine($"search: {evaluations:N0} evaluations ({n} experts + {gens} children): at most {(calls * evaluations).ToString("N0", inv)} model calls and {(tokens * evaluations).ToString("N0", inv)} generated tokens");
        var (finalSearch, finalReport) = FinalStageBudget.MaxEvaluations(config);
        if (config.FinalMerge.Enabled)
            o.WriteLine($"final stage: at most {finalSearch} evaluations on the search split and {finalReport} on the report split");
        else o.WriteLine("final stage: off");

        if (config.Model.Synthetic is null)
        {
            long elite;
            TensorSpec[] specs;
            using (var m = SafetensorsModel.Open(config.Model.BasePath!))
            {
                elite = m.Tensors.Sum(t => t.ByteLength);
                specs = m.Tensors.Select(t => new TensorSpec(t.Name, t.DType, t.Shape)).ToArray();
            }
            // One archive of G^(N−1) cells per task, or without the cycle one archive of G^N cells.
            long cells = config.Options.Cycle ? n * (long)Math.Pow(config.Options.Bins, n - 1) : (long)Math.Pow(config.Options.Bins, n);
            long stored = Math.Min(gens, cells);
            o.WriteLine($"storage: {Gb(elite)} per stored elite; at most {stored:N0} stored at once (generations and archive cells bound it): {Gb(elite * stored)}, plus {Gb(elite)} for the final model");
            o.WriteLine($"host memory: base and {n} experts resident ({Gb(elite * (n + 1))}) plus the child and two parents ({Gb(elite * 3)}) on the backend");
            if (device != ComputeDevice.Cpu) WriteGpuPlan(o, config, specs, device, (gpu ?? FirstGpu)());
        }
        return 0;
    }

    /// <summary>
    /// What a run of this build holds on the GPU (every weight set resident: base, experts, child, two
    /// parents, next to the SVD mutation's workspace and the runtime's reserve), against GPU 0's free
    /// memory, or an H100's where there is no GPU; the final stage's extra sets.
    /// </summary>
    private static void WriteGpuPlan(TextWriter o, ExperimentConfig config, IReadOnlyList<TensorSpec> specs, ComputeDevice device, (string Name, long FreeBytes)? card)
    {
        int experts = config.Model.ExpertPaths.Count;
        var mutation = config.Options.Mutation;
        var need = CudaComputeBackend.ResidentNeed(specs, experts + CudaComputeBackend.RunSetsBesidesExperts, mutation.SvdRank, mutation.Oversampling);
        string against = card is { } c ? $"{c.Name} with {GiB(c.FreeBytes)} free" : $"an 80 GB card ({GiB(ReferenceCardBytes)}; no usable GPU here)";
        long room = card?.FreeBytes ?? ReferenceCardBytes;
        if (card is null && device == ComputeDevice.Cuda)
            o.WriteLine("gpu: --device cuda needs a usable GPU and this machine has none: the run would stop before generation 0");
        else if (card is null)
            o.WriteLine("gpu: none usable here, so --device auto runs on the CPU; the GPU plan below is for an 80 GB card");
        if (mutation.Kind == MutationKind.Gaussian)
            o.WriteLine("gpu: Gaussian mutation draws its noise on the host (the CPU backend's code, 4 bytes uploaded per mutated weight) and adds it on the GPU: bit-identical to --device cpu");
        bool fits = need.TotalBytes <= room;
        var residency = RunResidency.Choose(config, room);
        o.WriteLine($"gpu memory, resident (base, experts and parents on the device): {need.Sets} weight sets (base, {experts} experts, child, two parents) {GiB(need.Sets * need.SetBytes)} + SVD mutation workspace {GiB(need.WorkspaceBytes)} " +
                    $"+ runtime reserve {GiB(need.ReserveBytes)} = {GiB(need.TotalBytes)} on {against}: {(fits ? "fits" : "does not fit")}");
        var plan = RunResidency.StreamingPlan(config, specs, room);
        o.WriteLine($"gpu memory, streamed (base, experts and parents on the host, streamed tensor by tensor): {plan.Children} child(ren) {GiB(plan.ChildBytes)} + staging {GiB(plan.StagingBytes)} " +
                    $"+ SVD mutation workspace {GiB(plan.PeakWorkspaceBytes)} + evaluator (KV cache {GiB(plan.EvaluatorKvCacheBytes)} for {RunResidency.PlannedBatch} x {RunResidency.PlannedTokens} tokens{CacheNote(RunResidency.EvaluatorGraph(config, specs))}, activations {GiB(plan.EvaluatorActivationBytes)}) " +
                    $"+ runtime reserve {GiB(plan.RuntimeReserveBytes)} = {GiB(plan.PeakBytes)} on {against}: {(plan.Fits ? "fits" : "does not fit")}");
        o.WriteLine(residency == Cuda.Backend.WeightResidency.Resident
            ? $"gpu: the run keeps its weight sets resident (they take at most {RunResidency.ResidentShare:P0} of the card, leaving the rest to the evaluator)"
            : plan.Fits ? "gpu: the run streams (resident would not leave the evaluator room)"
            : "gpu: DOES NOT FIT in either mode (the run refuses it before the first upload; use a larger card or --device cpu)");
        if (config.FinalMerge.Enabled)
        {
            int candidates = experts * config.FinalMerge.Top + config.FinalMerge.Generalists;
            long final = checked((1L + experts + candidates + 1) * need.SetBytes);
            o.WriteLine($"gpu memory, final stage: base, {experts} experts, up to {candidates} chosen elites and the merged model: up to {GiB(final)} " +
                        $"({(final + need.ReserveBytes <= room ? "fits" : "does not fit")} on {against})");
        }
    }

    /// <summary>GPU 0's name and free memory, or null when no GPU is usable.</summary>
    private static (string Name, long FreeBytes)? FirstGpu()
    {
        try
        {
            if (!CudaDeviceProbe.Probe().Available) return null;
            using var ctx = CudaContext.Create();
            return (ctx.Device.Name, ctx.MemoryInfo().Free);
        }
        catch (Exception e) when (e is CudaUnavailableException or CudaException or DllNotFoundException)
        {
            return null;
        }
    }

    /// <summary>How the evaluator's graph holds its KV cache, for the streamed plan's line.</summary>
    private static string CacheNote(Onnx.Graph.LlamaGraphKind? graph) => graph switch
    {
        Onnx.Graph.LlamaGraphKind.Fused => ", fused graph: one buffer filled in place",
        Onnx.Graph.LlamaGraphKind.Plain => ", plain graph: the previous and the new cache during a step",
        _ => "",
    };

    private static string GiB(long bytes) => bytes < 1L << 30
        ? (bytes / (double)(1L << 20)).ToString("0.#", CultureInfo.InvariantCulture) + " MiB"
        : (bytes / (double)(1L << 30)).ToString("0.##", CultureInfo.InvariantCulture) + " GiB";

    private static string Gb(long bytes) => (bytes / 1e9).ToString(bytes < 1e8 ? "0.####" : "0.##", CultureInfo.InvariantCulture) + " GB";
}
