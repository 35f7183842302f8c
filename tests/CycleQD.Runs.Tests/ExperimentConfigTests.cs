using CycleQD.Testing;
using CycleQD.Core;
using CycleQD.Core.Compute;
using CycleQD.Core.Sampling;
using CycleQD.Tensors;

namespace CycleQD.Runs.Tests;

public class ExperimentConfigTests
{
    [Fact]
    public void Parse_ShippedSyntheticExample_ReadsEverySetting()
    {
        var c = ExperimentConfig.Load(Path.Combine(TestPaths.RepoRoot, "examples", "synthetic.yaml"));
        Assert.Equal(["alpha", "beta", "gamma"], c.Options.Tasks);
        Assert.Equal(200, c.Generations);
        Assert.Equal(15, c.Options.Bins);
        Assert.Equal(SamplingKind.Elite, c.Options.Sampling.Kind);
        Assert.Equal(MutationKind.Svd, c.Options.Mutation.Kind);
        Assert.Equal(0.03, c.Options.Crossover.Std);
        Assert.Equal(DType.BF16, c.Model.Synthetic!.DType);
    }

    private static ConfigurationException ParseError(string yaml) =>
        Assert.Throws<ConfigurationException>(() => ExperimentConfig.Parse(yaml, "exp.yaml", "/tmp"));

    private const string Head = "tasks: [a, b]\nmodel: { synthetic: {} }\n";

    [Theory]
    [InlineData(Head + "archive: { bounds: { z: [0, 1] } }", "archive.bounds: unknown task 'z'")]
    [InlineData(Head + "archive: { bounds: { a: [0.5, 0.2] } }", "archive.bounds.a: lower bound 0.5 must be below upper bound 0.2")]
    [InlineData(Head + "archive: { bounds: { a: [0.3, 0.3] } }", "lower bound 0.3 must be below upper bound 0.3")]
    [InlineData(Head + "archive: { bins: 0 }", "archive.bins = 0, must be at least 1")]
    [InlineData(Head + "crossover: { std: -0.01 }", "crossover.std = -0.01, must be ≥ 0")]
    [InlineData(Head + "mutation: { kind: gaussian, sigma: -1 }", "mutation.sigma = -1, must be ≥ 0")]
    [InlineData(Head + "mutaton: { kind: svd }", "line 3: mutaton: unknown setting")]
    [InlineData(Head + "sampling: { kind: best }", "sampling.kind: 'best' is not one of elite, random")]
    [InlineData(Head + "mutation: { basis: parent }", "mutation.basis: 'parent' is not one of child, expert")]
    [InlineData("tasks: [a]\n", "'model' is required")]
    [InlineData("model: { synthetic: {} }\n", "'tasks' is required")]
    [InlineData("tasks: [a, b]\nmodel: { base: base, experts: { a: x, b: y, q: z } }\n", "model.experts: unknown task 'q'")]
    [InlineData("tasks: [a, b]\nmodel: { base: base, experts: { a: x } }\n", "model.experts: no expert for task 'b'")]
    public void Parse_BadExperiment_OneClearError(string yaml, string expected)
    {
        var e = ParseError(yaml);
        Assert.StartsWith("exp.yaml: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    private static void WriteModel(string path, long rows)
    {
        SafetensorsWriter.WriteFile(path, [TensorData.FromSingle("w", DType.F32, [rows, 2], new float[rows * 2])]);
    }

    [Fact]
    public void Start_MissingExpertFile_NamesTaskAndPath()
    {
        using var dir = new TempDir();
        WriteModel(dir.File("base.safetensors"), 3);
        WriteModel(dir.File("a.safetensors"), 3);
        string exp = Experiments.Write(dir, "exp.yaml", RealExperiment(dir));
        var e = Assert.Throws<ConfigurationException>(() => RunSession.Start(exp, dir.File("out"), null, null));
        Assert.Equal($"model.experts.tinyskills/db: {dir.File("b.safetensors")} not found", e.Message);
        Assert.False(Directory.Exists(dir.File("out")));
    }

    [Fact]
    public void Start_IncompatibleExpertShapes_NamesTaskTensorAndShapes()
    {
        using var dir = new TempDir();
        WriteModel(dir.File("base.safetensors"), 3);
        WriteModel(dir.File("a.safetensors"), 3);
        WriteModel(dir.File("b.safetensors"), 4);
        string exp = Experiments.Write(dir, "exp.yaml", RealExperiment(dir));
        var e = Assert.Throws<ConfigurationException>(() => RunSession.Start(exp, dir.File("out"), null, null));
        Assert.StartsWith("model.experts.tinyskills/db: incompatible with the base model: tensor 'w' has shape [3, 2]", e.Message);
        Assert.Contains("[4, 2]", e.Message);
    }

    /// <summary>Two TinySkills tasks over base/a/b.safetensors in <paramref name="dir"/>, with an (empty) TinySkills tasks folder.</summary>
    private static string RealExperiment(TempDir dir)
    {
        Directory.CreateDirectory(dir.File(Path.Combine("ts", "tasks")));
        return "tasks: [tinyskills/code, tinyskills/db]\n" +
            "model: { base: base.safetensors, experts: { tinyskills/code: a.safetensors, tinyskills/db: b.safetensors } }\n" +
            "evaluation: { tinyskills: ts }\n";
    }

    [Fact]
    public void Parse_ShippedTinySkillsExample_ReadsModelsAndEvaluation()
    {
        var c = ExperimentConfig.Load(Path.Combine(TestPaths.RepoRoot, "examples", "tinyskills.yaml"));
        Assert.Equal(["tinyskills/code", "tinyskills/db", "tinyskills/os"], c.Options.Tasks);
        Assert.Equal(15, c.Options.Bins);
        Assert.Equal(SamplingKind.Elite, c.Options.Sampling.Kind);
        Assert.Equal(MutationKind.Svd, c.Options.Mutation.Kind);
        Assert.Equal("valid", c.Evaluation.Split);
        Assert.Null(c.Evaluation.Limit);
        Assert.Equal(("best+generalists", 1), (c.FinalMerge.Candidates, c.FinalMerge.Generalists));
        Assert.Equal(Path.Combine(TestPaths.RepoRoot, "models", "tinyskills", "expert-os"), c.Model.ExpertPaths[2].Value);
        Assert.True(File.Exists(Path.Combine(c.Model.ExpertPaths[2].Value, "model.safetensors")));
        Assert.True(Directory.Exists(Path.Combine(c.Evaluation.TinySkillsDir!, "tasks", "code")));
        Assert.True(Directory.Exists(Path.Combine(c.Evaluation.TinySkillsDir!, "tasks", "generic")));
    }

    [Theory]
    [InlineData("", MutationBasis.Child)]
    [InlineData("mutation: { basis: expert }\n", MutationBasis.Expert)]
    [InlineData("mutation: { basis: child }\n", MutationBasis.Child)]
    public void Parse_MutationBasis_DefaultsToChild(string yaml, MutationBasis expected) =>
        Assert.Equal(expected, ExperimentConfig.Parse(Head + yaml, "exp.yaml", "/tmp").Options.Mutation.Basis);

    private const string RealHead = "tasks: [tinyskills/code]\nmodel: { base: b, experts: { tinyskills/code: c } }\n";

    [Theory]
    [InlineData(RealHead + "evaluation: { tinyskills: /tmp, split: bogus }", "line 3: evaluation.split: 'bogus' is not a split (train, valid, test or all")]
    [InlineData(RealHead + "evaluation: { tinyskills: /tmp, limit: 0 }", "line 3: evaluation.limit: 0 must be positive")]
    [InlineData(RealHead + "evaluation: { tinyskills: /tmp, threads: x }", "line 3: evaluation.threads: 'x' is not an integer")]
    [InlineData(RealHead + "evaluation: { tinyskills: /tmp, spilt: valid }", "line 3: evaluation.spilt: unknown setting")]
    [InlineData(RealHead, "evaluation.tinyskills: tinyskills/* tasks need evaluation.tinyskills")]
    [InlineData(RealHead + "evaluation: { tinyskills: /nonexistent-ts }", "line 3: evaluation.tinyskills: /nonexistent-ts is not a folder: not found")]
    [InlineData(RealHead + "evaluation: { tinyskills: /tmp }", "line 3: evaluation.tinyskills: /tmp has no tasks/ folder")]
    [InlineData(RealHead + "evaluation: { tinyskills: /etc/passwd }", "line 3: evaluation.tinyskills: /etc/passwd is not a folder (it is a file)")]
    [InlineData("tasks: [mbpp]\nmodel: { base: b, experts: { mbpp: c } }\nevaluation: { data: /nonexistent-data }\n", "line 3: evaluation.data: /nonexistent-data is not a folder: not found")]
    [InlineData("tasks: [tinyskills/code, humaneval]\nmodel: { base: b, experts: { tinyskills/code: c, humaneval: d } }\nevaluation: { }\n",
        "line 1: tasks: 'humaneval' is not a task this build can score real models on (known: mbpp, agentbench_db, agentbench_os, tinyskills/code")]
    [InlineData("tasks: [mbpp, agentbench_db]\nmodel: { base: b, experts: { mbpp: c, agentbench_db: d } }\n",
        "evaluation.data: task mbpp needs the benchmark data folder")]
    [InlineData(RealHead + "evaluation: { tinyskills: /tmp, split: test }", "line 3: evaluation.split: 'test' makes the search select on the test data")]
    [InlineData(RealHead + "evaluation: { tinyskills: /tmp, mbpp: { total_time_cap: 0 } }", "line 3: evaluation.mbpp.total_time_cap: 0 must be a positive number of seconds, or none")]
    [InlineData(RealHead + "evaluation: { tinyskills: /tmp, mbpp: { total_time_cap: soon } }", "line 3: evaluation.mbpp.total_time_cap: 'soon' is not a number")]
    [InlineData(RealHead + "evaluation: { tinyskills: /tmp, graph: turbo }", "line 3: evaluation.graph: 'turbo' is not a graph (fused or plain")]
    [InlineData(RealHead + "evaluation: { tinyskills: /tmp, lanes: -1 }", "line 3: evaluation.lanes: -1 must be ≥ 0")]
    [InlineData(RealHead + "evaluation: { tinyskills: /tmp, lanes: many }", "line 3: evaluation.lanes: 'many' is not an integer")]
    public void Parse_BadEvaluationSetting_OneClearErrorWithLine(string yaml, string expected)
    {
        var e = ParseError(yaml);
        Assert.StartsWith("exp.yaml: ", e.Message);
        Assert.Contains(expected, e.Message);
    }
    private static string RealOk => RealHead + $"evaluation: {{ tinyskills: {Path.Combine(TestPaths.RepoRoot, "models", "tinyskills")} }}\n";

    [Theory]
    [InlineData("", null)]
    [InlineData("graph: fused", Onnx.Graph.LlamaGraphKind.Fused)]
    [InlineData("graph: plain", Onnx.Graph.LlamaGraphKind.Plain)]
    public void Parse_EvaluationGraph_LeftOutIsTheDefault(string setting, Onnx.Graph.LlamaGraphKind? expected)
    {
        string ts = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        var c = ExperimentConfig.Parse(RealHead + $"evaluation: {{ tinyskills: {ts}{(setting.Length > 0 ? ", " + setting : "")} }}\n", "exp.yaml", "/tmp");
        Assert.Equal(expected, c.Evaluation.Graph);
    }

    [Theory]
    [InlineData("", 0)]
    [InlineData("lanes: 0", 0)]
    [InlineData("lanes: 3", 3)]
    public void Parse_EvaluationLanes_LeftOutPicks(string setting, int expected)
    {
        string ts = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        var c = ExperimentConfig.Parse(RealHead + $"evaluation: {{ tinyskills: {ts}{(setting.Length > 0 ? ", " + setting : "")} }}\n", "exp.yaml", "/tmp");
        Assert.Equal(expected, c.Evaluation.Lanes);
    }

    [Fact]
    public void Parse_EvaluationLanes_ForSamTasks_IsRefused()
    {
        var e = ParseError("tasks: [sam/kvasir]\nmodel: { base: b, experts: { sam/kvasir: c } }\nevaluation: { lanes: 2 }\n");
        Assert.Contains("evaluation.lanes: sets a Llama-family model's generation lanes; sam/kvasir runs SAM", e.Message);
    }

    [Fact]
    public void Parse_EvaluationGraph_ForSamTasks_IsRefused()
    {
        string yaml = "tasks: [sam/kvasir]\nmodel: { base: b, experts: { sam/kvasir: c } }\nevaluation: { graph: plain }\n";
        var e = ParseError(yaml);
        Assert.Contains("evaluation.graph: chooses a Llama-family model's graph; sam/kvasir runs SAM", e.Message);
    }

    [Theory]
    [InlineData("softmax", "softmax")]
    [InlineData("search", "search")]
    [InlineData("linear", "search")]
    public void Parse_FinalMergeMethod_SoftmaxOrSearch_LinearIsTheOldNameOfSearch(string given, string expected) =>
        Assert.Equal(expected, ExperimentConfig.Parse(RealOk + $"final_merge: {{ method: {given} }}\n", "exp.yaml", "/tmp").FinalMerge.Method);

    [Fact]
    public void Parse_ReportBaselines_ResolvedAgainstTheFile_MissingOneNamed()
    {
        string m = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        var c = ExperimentConfig.Parse(RealOk + "report: { baselines: { multitask: multitask } }\n", "exp.yaml", m);
        Assert.Equal([new KeyValuePair<string, string>("multitask", Path.Combine(m, "multitask"))], c.Report.BaselineModels);
        var e = Assert.Throws<ConfigurationException>(() => ExperimentConfig.Parse(RealOk + "report: { baselines: { mt: nowhere } }\n", "exp.yaml", m));
        Assert.Contains("report.baselines.mt: " + Path.Combine(m, "nowhere") + " not found", e.Message);
    }

    [Fact]
    public void Parse_MbppTotalTimeCap_Defaults60_TakesSeconds_AndNoneMeansNoCap()
    {
        string ts = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        Assert.Equal(60, ExperimentConfig.Parse(RealOk, "exp.yaml", "/tmp").Evaluation.MbppTotalTimeCap);
        Assert.Equal(120, ExperimentConfig.Parse(RealHead + $"evaluation: {{ tinyskills: {ts}, mbpp: {{ total_time_cap: 120 }} }}\n", "exp.yaml", "/tmp").Evaluation.MbppTotalTimeCap);
        Assert.Null(ExperimentConfig.Parse(RealHead + $"evaluation: {{ tinyskills: {ts}, mbpp: {{ total_time_cap: none }} }}\n", "exp.yaml", "/tmp").Evaluation.MbppTotalTimeCap);
    }

    [Fact]
    public void Parse_FinalMergeDefaults_OnForRealModels_OffForSynthetic()
    {
        var real = ExperimentConfig.Parse(RealOk, "exp.yaml", "/tmp");
        Assert.True(real.FinalMerge.Enabled);
        Assert.Equal("search", real.FinalMerge.Method);
        Assert.Equal(1, real.FinalMerge.Top);
        Assert.Equal(10, real.FinalMerge.Grid.Count);
        Assert.Equal(("best+generalists", 1), (real.FinalMerge.Candidates, real.FinalMerge.Generalists));
        Assert.Equal(0.2, real.Report.TiesDensity);
        Assert.False(ExperimentConfig.Parse(Head, "exp.yaml", "/tmp").FinalMerge.Enabled);

        var set = ExperimentConfig.Parse(RealOk + "final_merge: { top: 2, grid: [0.5, 1], rounds: 0 }\nreport: { task_arithmetic_lambdas: [0.3, 0.7], ties_density: 0.5, ties_lambda: 0.8 }\n", "exp.yaml", "/tmp");
        Assert.Equal((2, 0), (set.FinalMerge.Top, set.FinalMerge.Rounds));
        Assert.Equal([0.5, 1.0], set.FinalMerge.Grid);
        Assert.Equal([0.3, 0.7], set.Report.TaskArithmeticLambdas);
        Assert.Equal((0.5, 0.8), (set.Report.TiesDensity, set.Report.TiesLambda));
    }

    [Theory]
    [InlineData("final_merge: { method: ties }", "line 4: final_merge.method: 'ties' is not a final merge method (known: softmax, search; linear = search)")]
    [InlineData("final_merge: { top: 8 }", "line 4: final_merge.top: 8 × 1 tasks must be between 1 and 7 elites in all")]
    [InlineData("final_merge: { grid: [] }", "line 4: final_merge.grid: must be a non-empty list of weights in [0, 4]")]
    [InlineData("final_merge: { grid: [0.5, x] }", "line 4: final_merge.grid: expected a number")]
    [InlineData("final_merge: { rounds: -1 }", "line 4: final_merge.rounds: -1 must be between 0 and 10")]
    [InlineData("final_merge: { enable: true }", "line 4: final_merge.enable: unknown setting")]
    [InlineData("final_merge: { candidates: all }", "line 4: final_merge.candidates: 'all' is not a candidate set (known: best, best+generalists)")]
    [InlineData("final_merge: { candidates: best, generalists: 2 }", "line 4: final_merge.generalists: only used with candidates: best+generalists")]
    [InlineData("final_merge: { candidates: best+generalists, generalists: 0 }", "line 4: final_merge.generalists: 0 must be at least 1, and 1 × 1 tasks + 0 at most 7 elites in all")]
    [InlineData("final_merge: { top: 5, candidates: best+generalists, generalists: 3 }", "line 4: final_merge.generalists: 3 must be at least 1, and 5 × 1 tasks + 3 at most 7 elites in all")]
    [InlineData("final_merge: { candidates: best+generalists, generalists: x }", "line 4: final_merge.generalists: 'x' is not an integer")]
    [InlineData("report: { ties_density: 0 }", "line 4: report.ties_density: 0 must be in (0, 1]")]
    [InlineData("report: { task_arithmetic_lambdas: [0] }", "line 4: report.task_arithmetic_lambdas: must be a non-empty list of values in (0, 4]")]
    public void Parse_BadFinalMergeOrReportSetting_OneClearErrorWithLine(string line, string expected)
    {
        var e = ParseError(RealOk + line + "\n");
        Assert.StartsWith("exp.yaml: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Parse_FinalMergeCandidates_BestOrBestPlusGeneralists()
    {
        var best = ExperimentConfig.Parse(RealOk + "final_merge: { candidates: best }\n", "exp.yaml", "/tmp").FinalMerge;
        Assert.Equal(("best", 0), (best.Candidates, best.Generalists));
        var some = ExperimentConfig.Parse(RealOk + "final_merge: { candidates: best+generalists, generalists: 1 }\n", "exp.yaml", "/tmp").FinalMerge;
        Assert.Equal(("best+generalists", 1), (some.Candidates, some.Generalists));
        var dflt = ExperimentConfig.Parse(RealOk + "final_merge: { candidates: best+generalists }\n", "exp.yaml", "/tmp").FinalMerge;
        Assert.Equal(("best+generalists", FinalMergeSettings.DefaultGeneralists), (dflt.Candidates, dflt.Generalists));
        var count = ExperimentConfig.Parse(RealOk + "final_merge: { generalists: 4 }\n", "exp.yaml", "/tmp").FinalMerge;
        Assert.Equal(("best+generalists", 4), (count.Candidates, count.Generalists));
        // The default set leaves no room after top 7 × 1 task: it falls back to the archive bests.
        var full = ExperimentConfig.Parse(RealOk + "final_merge: { top: 7 }\n", "exp.yaml", "/tmp").FinalMerge;
        Assert.Equal(("best", 0), (full.Candidates, full.Generalists));
    }

    [Fact]
    public void Parse_FinalMergeOnSyntheticProblem_IsRefused()
    {
        var e = ParseError(Head + "final_merge: { enabled: true }\n");
        Assert.Contains("line 3: final_merge.enabled: the final merge and its report need real models", e.Message);
    }
}
