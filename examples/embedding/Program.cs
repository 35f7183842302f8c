// A host application embedding CycleQD through its NuGet packages (see docs/library.md):
//   (a) CycleQD on the synthetic problem, scored by an evaluator written here;
//   (b) one task-arithmetic merge of the TinySkills experts, scored on the TinySkills benchmark;
//   (c) the same search driven by ask/tell, checked against the push loop.
// Each part prints one "key: name=value ..." line that scripts check (./build.sh test does).
// Usage: dotnet run -- [REPOSITORY_ROOT] (default: two folders up, where models/tinyskills lives).
using System.Globalization;
using System.Text.Json;
using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Core.Synthetic;
using CycleQD.Cpu;
using CycleQD.Cpu.Merging;
using CycleQD.Onnx.Runtime;
using CycleQD.Tasks.TinySkills;
using CycleQD.Tensors;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
string repo = Path.GetFullPath(args.Length > 0 ? args[0] : Path.Combine(AppContext.BaseDirectory, "../../../../../.."));
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };

// ---- (a) quick start: the push loop with an evaluator of our own ----
string[] tasks = ["a", "b", "c"];
var problem = new SyntheticProblem(tasks, new SyntheticProblemOptions(Layers: 2, Rows: 32, Cols: 32));
using var backend = new CpuComputeBackend();                       // owns every weight set below
using var baseModel = backend.Upload(problem.BaseModel());
var experts = tasks.Select((t, k) => new Expert(t, backend.Upload(problem.Expert(k)))).ToList();
var options = new CycleQDOptions { Tasks = tasks, Bins = 5, Seed = 1 };
const int generations = 20;
using (var engine = new CycleQDEngine(options, backend, baseModel, experts,
           new TaskVectorAlignment(tasks, baseModel, experts), new InMemoryEliteStore()))
{
    int committed = 0;
    engine.GenerationCompleted += _ => committed++;               // progress: one event per generation
    await engine.InitializeAsync(cancel.Token);
    await engine.RunAsync(generations, cancel.Token);
    var archives = engine.Archives;
    Console.WriteLine($"synthetic: generations={committed} elites={archives.Sum(a => a.Cells.Count)} " +
        $"qd_score={archives.Sum(a => a.QdScore):F4} best={archives.Max(a => a.BestQuality):F4}");
}

// ---- (b) task arithmetic of the TinySkills experts, scored on the valid split ----
string tinySkills = Path.Combine(repo, "models", "tinyskills");
string[] skills = ["code", "db", "os"];
const float lambda = 0.7f;
using (var model = LlamaModel.Open(Path.Combine(tinySkills, "base")))
using (var baseFile = SafetensorsModel.Open(Path.Combine(tinySkills, "base")))
{
    var expertFiles = skills.Select(s => SafetensorsModel.Open(Path.Combine(tinySkills, "expert-" + s))).ToList();
    var merged = new Dictionary<string, float[]>(StringComparer.Ordinal);
    foreach (var tensor in baseFile.Tensors)
    {
        var values = baseFile.ReadSingle(tensor.Name);
        var taskModels = expertFiles.Select(f => (ReadOnlyMemory<float>)f.ReadSingle(tensor.Name)).ToArray();
        merged[tensor.Name] = new float[values.Length];
        TaskVectorMerges.TaskArithmetic(values, taskModels, [1f, 1f, 1f], lambda, normalize: false, merged[tensor.Name]);
    }
    foreach (var f in expertFiles) f.Dispose();
    using var weights = LlamaWeights.FromArrays(model.Folder.Config, merged, $"task arithmetic, lambda {lambda}");
    var generator = model.CreateGenerator(weights);                 // same session, merged weights bound
    var line = new List<string>();
    foreach (var skill in skills)
    {
        var benchmark = new TinySkillsBenchmark(new TinySkillsOptions { TinySkillsDir = tinySkills, Skill = skill, Split = "valid" });
        var report = await benchmark.EvaluateAsync(generator, progress: null, cancel.Token);
        line.Add($"{skill}={report.Score:F4}");
    }
    Console.WriteLine($"merge: method=task_arithmetic lambda={lambda} {string.Join(' ', line)}");
}

// ---- (c) ask/tell: the host scores each child itself ----
RunState AskTell()
{
    using var engine = new CycleQDEngine(options, backend, baseModel, experts, new InMemoryEliteStore(), sink: null);
    engine.Initialize(experts.Select(e => (IReadOnlyList<double>)Score(e.Weights)).ToList());
    while (engine.NextGeneration < generations)
    {
        Candidate child = engine.Ask();                            // recipe: child.Parents, CrossoverWeights, Mutation
        engine.Tell(child.Id, Score(child.Weights));               // child.Weights is valid until this call
    }
    return engine.CaptureState();
}
RunState Push()
{
    using var engine = new CycleQDEngine(options, backend, baseModel, experts, problem, new InMemoryEliteStore());
    engine.InitializeAsync(cancel.Token).GetAwaiter().GetResult();
    engine.RunAsync(generations, cancel.Token).GetAwaiter().GetResult();
    return engine.CaptureState();
}
double[] Score(IWeightSet w) => problem.EvaluateAsync(backend, w, cancel.Token).GetAwaiter().GetResult();

var told = AskTell();
bool same = JsonSerializer.Serialize(told) == JsonSerializer.Serialize(Push());
int elites = told.Archives.Sum(a => a.Cells.Count);
Console.WriteLine($"ask_tell: generations={told.NextGeneration} elites={elites} equal_to_push={same.ToString().ToLowerInvariant()}");

foreach (var e in experts) e.Weights.Dispose();
return same ? 0 : 1;

/// <summary>
/// The sample's own evaluator: a candidate's score on task k is the cosine between its task vector
/// (candidate − base) and expert k's, clipped to [0, 1]. Deterministic, as the engine requires.
/// </summary>
sealed class TaskVectorAlignment(IReadOnlyList<string> tasks, IWeightSet baseModel, IReadOnlyList<Expert> experts) : ICandidateEvaluator
{
    public IReadOnlyList<string> TaskNames => tasks;

    public Task<double[]> EvaluateAsync(IComputeBackend backend, IWeightSet candidate, CancellationToken cancellationToken)
    {
        var baseValues = Read(backend, baseModel);
        var c = Subtract(Read(backend, candidate), baseValues);
        var scores = new double[tasks.Count];
        for (int k = 0; k < scores.Length; k++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var e = Subtract(Read(backend, experts[k].Weights), baseValues);
            double dot = 0, cc = 0, ee = 0;
            for (int i = 0; i < c.Length; i++) { dot += c[i] * e[i]; cc += c[i] * c[i]; ee += e[i] * e[i]; }
            scores[k] = cc == 0 || ee == 0 ? 0 : Math.Clamp(dot / Math.Sqrt(cc * ee), 0, 1);
        }
        return Task.FromResult(scores);
    }

    private static float[] Read(IComputeBackend backend, IWeightSet set)
    {
        var all = new List<float>();
        for (int i = 0; i < set.Tensors.Count; i++)
        {
            var bytes = new byte[set.Tensors[i].ByteLength];
            backend.Download(set, i, bytes);
            var values = new float[set.Tensors[i].ElementCount];
            DTypeConversion.ToSingle(bytes, set.Tensors[i].DType, values);
            all.AddRange(values);
        }
        return [.. all];
    }

    private static double[] Subtract(float[] a, float[] b) => a.Select((x, i) => (double)x - b[i]).ToArray();
}
