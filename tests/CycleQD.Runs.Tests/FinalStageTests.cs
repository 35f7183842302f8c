using System.Text.Json.Nodes;
using CycleQD.Runs.Final;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

/// <summary>The end of a real-model run: final merge, final/ files, report.json, and resume.</summary>
public class FinalStageTests
{
    private static readonly string[] RowKeys =
    [
        "base", "expert:tinyskills/code", "expert:tinyskills/db", "expert:tinyskills/os", "task_arithmetic", "ties",
        "elite:tinyskills/code", "elite:tinyskills/db", "elite:tinyskills/os", "best_elite_per_task", "final_softmax", "final",
    ];

    /// <summary>The shipped TinySkills set, 8 prompts per task and split, a small weight grid.</summary>
    internal static string TinyExperiment(int generations)
    {
        string m = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        return $"""
            name: final-test
            seed: 2
            generations: {generations}
            tasks: [tinyskills/code, tinyskills/db, tinyskills/os]
            model:
              base: {m}/base
              experts:
                tinyskills/code: {m}/expert-code
                tinyskills/db: {m}/expert-db
                tinyskills/os: {m}/expert-os
            evaluation: {"{"} split: valid, limit: 8, tinyskills: {m} {"}"}
            archive: {"{"} bins: 15 {"}"}
            mutation: {"{"} kind: svd {"}"}
            final_merge: {"{"} grid: [0.5, 1.0], rounds: 1 {"}"}
            report: {"{"} task_arithmetic_lambdas: [0.5, 1.0] {"}"}
            """;
    }

    private static List<string> Finish(RunSession s)
    {
        var lines = new List<string>();
        s.InitializeAsync(default).GetAwaiter().GetResult();
        Assert.True(s.RunAsync(default).GetAwaiter().GetResult());
        Assert.NotNull(s.FinishAsync(lines.Add, default).GetAwaiter().GetResult());
        return lines;
    }

    private static List<string> RunTo(string exp, string dir, int generations)
    {
        using var s = RunSession.Start(exp, dir, generations, null);
        return Finish(s);
    }

    private static List<string> ResumeTo(string dir, int? generations)
    {
        using var s = RunSession.Resume(dir, generations);
        return Finish(s);
    }

    private static JsonObject Json(string path) => JsonNode.Parse(File.ReadAllText(path))!.AsObject();

    [Fact]
    public void Finish_TinyRun_WritesFinalModelFinalJsonAndEveryReportRow()
    {
        using var tmp = new TempDir();
        string exp = Experiments.Write(tmp, "exp.yaml", TinyExperiment(2));
        string run = tmp.File("run");
        var lines = RunTo(exp, run, 2);
        Assert.Contains(lines, l => l.StartsWith("final: weight search trial", StringComparison.Ordinal));
        Assert.Contains(lines, l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^final: weight search trial 1/\d+: weights \[.*\] valid average \d+\.\d %  eta \d\d:\d\d:\d\d$"));

        // final/model.safetensors: the base's tensor names, dtypes and shapes.
        string basePath = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills", "base");
        using var baseModel = SafetensorsModel.Open(basePath);
        using (var final = SafetensorsModel.Open(Path.Combine(run, "final", "model.safetensors")))
        {
            Assert.Equal(baseModel.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal), final.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
            foreach (var t in baseModel.Tensors)
            {
                var f = final.Tensors.Single(x => x.Name == t.Name);
                Assert.Equal(t.DType, f.DType);
                Assert.Equal(t.Shape, f.Shape);
            }
        }

        var fj = Json(Path.Combine(run, "final", "final.json"));
        Assert.Equal("search", fj["method"]!.GetValue<string>());
        Assert.Equal(2, fj["generations"]!.GetValue<int>());
        var elites = fj["elites"]!.AsArray();
        var weights = fj["weights"]!.AsArray().Select(w => w!.GetValue<double>()).ToArray();
        // The default candidates: the three archive bests (fewer when one leads several archives) and one generalist.
        Assert.InRange(elites.Count, 1, 4);
        Assert.Equal(elites.Count, weights.Length);
        foreach (var e in elites)
        {
            Assert.StartsWith("tinyskills/", e!["task"]!.GetValue<string>());
            Assert.Equal(2, e["cell"]!.AsArray().Count);
            Assert.False(string.IsNullOrEmpty(e["id"]!.GetValue<string>()));
        }
        int trials = fj["search"]!["trials"]!.GetValue<int>();
        Assert.InRange(trials, 1, FinalMergeSearch.MaxEvaluations(elites.Count, 2, 1));
        Assert.Equal(3, fj["test_scores"]!.AsObject().Count);
        Assert.Equal(3, fj["search_scores"]!.AsObject().Count);

        // The file holds base + Σ wᵢ (eliteᵢ − base): recomputed here in float64 from the model files.
        AssertIsLinearMerge(run, basePath, elites.Select(e => e!["id"]!.GetValue<string>()).ToArray(), weights);

        var report = Json(Path.Combine(run, "report.json"));
        Assert.True(report["complete"]!.GetValue<bool>());
        Assert.Equal(2, report["generations"]!.GetValue<int>());
        var rows = report["rows"]!.AsArray();
        Assert.Equal(RowKeys, rows.Select(r => r!["key"]!.GetValue<string>()));
        foreach (var r in rows)
        {
            var test = r!["test"]!.AsObject();
            Assert.Equal(3, test.Count);
            foreach (var (_, v) in test) Assert.InRange(v!.GetValue<double>(), 0, 1);
        }
        var finalRow = rows.Single(r => r!["key"]!.GetValue<string>() == "final")!;
        foreach (var t in new[] { "tinyskills/code", "tinyskills/db", "tinyskills/os" })
            Assert.Equal(fj["test_scores"]![t]!.GetValue<double>(), finalRow["test"]![t]!.GetValue<double>());
        // The per-task row takes each skill from its own archive's best elite.
        var perTask = rows.Single(r => r!["key"]!.GetValue<string>() == "best_elite_per_task")!;
        foreach (var t in new[] { "tinyskills/code", "tinyskills/db", "tinyskills/os" })
            Assert.Equal(rows.Single(r => r!["key"]!.GetValue<string>() == "elite:" + t)!["test"]![t]!.GetValue<double>(), perTask["test"]![t]!.GetValue<double>());

        string summary = File.ReadAllText(Path.Combine(run, "summary.md"));
        Assert.Contains("## Test split", summary);
        Assert.Contains("- precision: float32 on the CPU", summary);
        Assert.Contains("| CycleQD final (search) |", summary);
        Assert.Contains("| CycleQD final (softmax) |", summary);
        Assert.Contains("| task arithmetic (λ ", summary);
    }

    private static void AssertIsLinearMerge(string run, string basePath, string[] ids, double[] weights)
    {
        string m = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        using var b = SafetensorsModel.Open(basePath);
        var elites = ids.Select(id => SafetensorsModel.Open(id.StartsWith("expert:tinyskills/", StringComparison.Ordinal)
            ? Path.Combine(m, "expert-" + id["expert:tinyskills/".Length..])
            : Path.Combine(run, "elites", id + ".safetensors"))).ToArray();
        try
        {
            using var final = SafetensorsModel.Open(Path.Combine(run, "final", "model.safetensors"));
            double err = 0, norm = 0;
            foreach (var t in b.Tensors)
            {
                var bv = Floats(b, t.Name);
                var ev = elites.Select(e => Floats(e, t.Name)).ToArray();
                var fv = Floats(final, t.Name);
                for (int j = 0; j < bv.Length; j++)
                {
                    double want = bv[j];
                    for (int i = 0; i < ev.Length; i++) want += weights[i] * ((double)ev[i][j] - bv[j]);
                    err += (fv[j] - want) * (fv[j] - want);
                    norm += want * want;
                }
            }
            Assert.True(Math.Sqrt(err / norm) < 1e-6, $"‖final − ref‖/‖ref‖ = {Math.Sqrt(err / norm):E2}");
        }
        finally
        {
            foreach (var e in elites) e.Dispose();
        }
    }

    private static float[] Floats(SafetensorsModel model, string name)
    {
        var t = model.Tensors.Single(x => x.Name == name);
        var v = new float[t.ElementCount];
        DTypeConversion.ToSingle(model.GetBytes(name), t.DType, v);
        return v;
    }

    [Fact]
    public void Resume_AfterFinalStage_DoesNotRedoIt_AndAnInterruptedOneReusesCachedRows()
    {
        using var tmp = new TempDir();
        string exp = Experiments.Write(tmp, "exp.yaml", TinyExperiment(2));
        string run = tmp.File("run");
        RunTo(exp, run, 2);
        string reportPath = Path.Combine(run, "report.json"), finalJson = Path.Combine(run, "final", "final.json"), model = Path.Combine(run, "final", "model.safetensors");
        byte[] report = File.ReadAllBytes(reportPath), final = File.ReadAllBytes(finalJson), weights = File.ReadAllBytes(model);
        var modelTime = File.GetLastWriteTimeUtc(model);

        // Finished: nothing is evaluated or written again.
        var again = ResumeTo(run, null);
        Assert.Single(again);
        Assert.StartsWith("final: already done for 2 generations", again[0]);
        Assert.Equal(report, File.ReadAllBytes(reportPath));
        Assert.Equal(final, File.ReadAllBytes(finalJson));
        Assert.Equal(modelTime, File.GetLastWriteTimeUtc(model));

        // Killed during the final search: report.json incomplete, no final/. The base, expert and
        // baseline rows are reused; the search runs again and lands on the same model.
        var partial = JsonNode.Parse(report)!.AsObject();
        partial["complete"] = false;
        var rows = partial["rows"]!.AsArray();
        for (int i = rows.Count - 1; i >= 0; i--)
            if (rows[i]!["key"]!.GetValue<string>() is "final" or "final_softmax" or "best_elite_per_task" || rows[i]!["key"]!.GetValue<string>().StartsWith("elite:", StringComparison.Ordinal))
                rows.RemoveAt(i);
        File.WriteAllText(reportPath, partial.ToJsonString());
        Directory.Delete(Path.Combine(run, "final"), recursive: true);
        var redo = ResumeTo(run, null);
        Assert.DoesNotContain(redo, l => l.StartsWith("final: scoring base", StringComparison.Ordinal) || l.StartsWith("final: scoring expert", StringComparison.Ordinal)
                                        || l.StartsWith("final: task arithmetic", StringComparison.Ordinal) || l.StartsWith("final: TIES", StringComparison.Ordinal));
        Assert.Contains(redo, l => l.StartsWith("final: weight search trial", StringComparison.Ordinal));
        Assert.Equal(weights, File.ReadAllBytes(model));
        var redone = Json(reportPath);
        var before = JsonNode.Parse(report)!.AsObject();
        Assert.Equal(before["rows"]!.ToJsonString(), redone["rows"]!.ToJsonString());
        Assert.True(redone["complete"]!.GetValue<bool>());

        // A raised target: the search goes on and the final stage runs for the new count, still reusing the baselines.
        var more = ResumeTo(run, 3);
        Assert.DoesNotContain(more, l => l.StartsWith("final: scoring base", StringComparison.Ordinal));
        Assert.Equal(3, Json(finalJson)["generations"]!.GetValue<int>());
        Assert.Equal(3, Json(reportPath)["generations"]!.GetValue<int>());
    }

    [Fact]
    public void Finish_SoftmaxMethodAndMultitaskBaseline_ModelFileIsTheSoftmaxMerge_TableHasBothFinalsAndTheBaseline()
    {
        using var tmp = new TempDir();
        string m = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        string exp = Experiments.Write(tmp, "exp.yaml", TinyExperiment(2)
            .Replace("final_merge: { grid", "final_merge: { method: softmax, grid", StringComparison.Ordinal)
            .Replace("report: { task_arithmetic_lambdas: [0.5, 1.0] }", $"report: {{ task_arithmetic_lambdas: [0.5, 1.0], baselines: {{ multitask: {m}/multitask }} }}", StringComparison.Ordinal));
        string run = tmp.File("run");
        RunTo(exp, run, 2);

        var fj = Json(Path.Combine(run, "final", "final.json"));
        Assert.Equal("softmax", fj["method"]!.GetValue<string>());
        var sm = fj["softmax"]!.AsObject();
        Assert.Equal(1.0, sm["temperature"]!.GetValue<double>());
        var elites = sm["elites"]!.AsArray().Select(e => e!.AsObject()).ToArray();
        Assert.Equal(["tinyskills/code", "tinyskills/db", "tinyskills/os"], elites.Select(e => e["archive"]!.GetValue<string>()));
        // β = softmax of each archive best's quality on its own task (search split), temperature 1.
        var q = elites.Select(e => e["quality"]!.GetValue<double>()).ToArray();
        var beta = elites.Select(e => e["beta"]!.GetValue<double>()).ToArray();
        double z = q.Sum(Math.Exp);
        for (int i = 0; i < q.Length; i++) Assert.Equal(Math.Exp(q[i]) / z, beta[i], 12);
        var archive = Json(Path.Combine(run, "archive.json")).ToJsonString();
        foreach (var e in elites) Assert.Contains(e["id"]!.GetValue<string>(), archive);
        AssertIsLinearMerge(run, Path.Combine(m, "base"), elites.Select(e => e["id"]!.GetValue<string>()).ToArray(), beta);

        var report = Json(Path.Combine(run, "report.json"));
        var keys = report["rows"]!.AsArray().Select(r => r!["key"]!.GetValue<string>()).ToArray();
        Assert.Equal(RowKeys.Take(6).Append("baseline:multitask").Concat(RowKeys.Skip(6)), keys);
        var rows = report["rows"]!.AsArray().Select(r => r!.AsObject()).ToArray();
        var softRow = rows.Single(r => r["key"]!.GetValue<string>() == "final_softmax");
        foreach (var t in new[] { "tinyskills/code", "tinyskills/db", "tinyskills/os" })
            Assert.Equal(sm["test_scores"]![t]!.GetValue<double>(), softRow["test"]![t]!.GetValue<double>());
        // The multitask model holds all three skills: well above the tiny merges on 8 prompts per task.
        var mt = rows.Single(r => r["key"]!.GetValue<string>() == "baseline:multitask");
        double mtAvg = mt["test"]!.AsObject().Average(kv => kv.Value!.GetValue<double>());
        Assert.True(mtAvg > 0.5, $"multitask test average {mtAvg}");
        string summary = File.ReadAllText(Path.Combine(run, "summary.md"));
        Assert.Contains("| multitask (baseline) |", summary);
        double finalAvg = rows.Single(r => r["key"]!.GetValue<string>() == "final")["test"]!.AsObject().Average(kv => kv.Value!.GetValue<double>());
        Assert.Equal(finalAvg <= mtAvg, summary.Contains("CycleQD final (search) (", StringComparison.Ordinal) && summary.Contains("does not beat multitask (baseline)", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(new[] { 0.2, 0.9, 0.5 }, 1.0)]
    [InlineData(new[] { 1000.0, 999.0 }, 1.0)]
    [InlineData(new[] { 0.3, 0.3, 0.3, 0.3 }, 0.5)]
    public void SoftmaxMergeWeights_MatchFp64Formula_AndSumToOne(double[] q, double t)
    {
        var beta = SoftmaxMergeWeights.Of(q, t);
        double max = q.Max(), z = q.Sum(x => Math.Exp((x - max) / t));
        for (int i = 0; i < q.Length; i++) Assert.Equal(Math.Exp((q[i] - max) / t) / z, beta[i], 14);
        Assert.Equal(1.0, beta.Sum(), 12);
        Assert.Equal(Array.IndexOf(q, q.Max()), Array.IndexOf(beta, beta.Max()));
    }

    [Fact]
    public void SoftmaxMergeWeights_BadInput_OneClearError()
    {
        Assert.Contains("temperature 0", Assert.Throws<ArgumentException>(() => SoftmaxMergeWeights.Of([0.5], 0)).Message);
        Assert.Contains("non-finite", Assert.Throws<ArgumentException>(() => SoftmaxMergeWeights.Of([double.NaN], 1)).Message);
    }

    [Fact]
    public void Verdicts_FinalBelowBaseline_SaysSoPlainly_AboveSaysNothing()
    {
        var r = new RunReport(["a", "b"], "k", 3);
        r.Set(new ReportRow("baseline:multitask", "multitask (baseline)", null, [0.9, 0.8], ""));
        r.Set(new ReportRow("final", "CycleQD final (search)", null, [0.4, 0.5], ""));
        r.Set(new ReportRow("final_softmax", "CycleQD final (softmax)", null, [0.95, 0.9], ""));
        Assert.Equal(["CycleQD final (search) (45.0 % test average) does not beat multitask (baseline) (85.0 %)."], r.Verdicts());
        Assert.Contains("**CycleQD final (search) (45.0 % test average) does not beat multitask (baseline) (85.0 %).**", r.ToMarkdown());
        Assert.Contains("does not beat", r.ToText());
    }

    [Fact]
    public void Finish_BestPlusGeneralists_FinalJsonNamesEachEliteAndWhy_AndAChangedSettingRedoesOnlyTheMerge()
    {
        using var tmp = new TempDir();
        string exp = Experiments.Write(tmp, "exp.yaml", TinyExperiment(2).Replace("rounds: 1 }", "rounds: 1, candidates: best+generalists, generalists: 2 }", StringComparison.Ordinal));
        string run = tmp.File("run");
        var lines = RunTo(exp, run, 2);
        Assert.Contains(lines, l => l.Contains(": generalist rank 1 (mean valid score ", StringComparison.Ordinal));

        var fj = Json(Path.Combine(run, "final", "final.json"));
        Assert.Equal("best+generalists", fj["search"]!["candidates"]!.GetValue<string>());
        Assert.Equal(2, fj["search"]!["generalists"]!.GetValue<int>());
        var elites = fj["elites"]!.AsArray().Select(e => e!.AsObject()).ToArray();
        var ids = elites.Select(e => e["id"]!.GetValue<string>()).ToArray();
        Assert.Equal(ids.Length, ids.Distinct().Count());
        var bests = elites.Where(e => e["selected_as"]!.GetValue<string>() == "archive_best").ToArray();
        var generalists = elites.Where(e => e["selected_as"]!.GetValue<string>() == "generalist").ToArray();
        Assert.Equal(elites.Length, bests.Length + generalists.Length);
        Assert.InRange(bests.Length, 1, 3);
        foreach (var b in bests) Assert.Equal("best of archive " + b["task"]!.GetValue<string>(), b["reason"]!.GetValue<string>());
        // The run has children beyond the archive bests, so both generalists are there, best mean first,
        // each not below any elite left out (the mean over the three tasks of its search scores).
        Assert.Equal(2, generalists.Length);
        Assert.Equal([1, 2], generalists.Select(g => g["rank"]!.GetValue<int>()));
        Assert.StartsWith("generalist rank 1 (mean valid score ", generalists[0]["reason"]!.GetValue<string>());
        double Mean(JsonObject e) => e["search_scores"]!.AsObject().Select(kv => kv.Value!.GetValue<double>()).Average();
        foreach (var g in generalists) Assert.Equal(Mean(g), g["mean_search_score"]!.GetValue<double>(), 12);
        Assert.True(Mean(generalists[0]) >= Mean(generalists[1]));
        Assert.Equal(elites.Length, fj["weights"]!.AsArray().Count);
        AssertIsLinearMerge(run, Path.Combine(TestPaths.RepoRoot, "models", "tinyskills", "base"), ids,
            fj["weights"]!.AsArray().Select(w => w!.GetValue<double>()).ToArray());

        // The supported way to compare candidate sets: edit final_merge in the run's experiment.yaml and resume.
        string config = Path.Combine(run, "experiment.yaml");
        File.WriteAllText(config, File.ReadAllText(config).Replace("candidates: best+generalists, generalists: 2", "candidates: best", StringComparison.Ordinal));
        var redo = ResumeTo(run, null);
        Assert.DoesNotContain(redo, l => l.StartsWith("final: scoring base", StringComparison.Ordinal) || l.StartsWith("final: TIES", StringComparison.Ordinal));
        Assert.Contains(redo, l => l.StartsWith("final: weight search trial", StringComparison.Ordinal));
        var after = Json(Path.Combine(run, "final", "final.json"));
        Assert.Equal("best", after["search"]!["candidates"]!.GetValue<string>());
        Assert.Equal(bests.Select(b => b["id"]!.GetValue<string>()), after["elites"]!.AsArray().Select(e => e!["id"]!.GetValue<string>()));
        Assert.All(after["elites"]!.AsArray(), e => Assert.Equal("archive_best", e!["selected_as"]!.GetValue<string>()));
    }

    [Fact]
    public void TiesBaseline_HardSet_ReproducesReferenceMergedTies()
    {
        string ts = TestPaths.RequireSharedData("models", "tinyskills", "merged-ties");
        string root = Path.GetDirectoryName(ts)!;
        var source = TiesBaseline.Build(Path.Combine(root, "base"), new[] { "code", "db", "os" }.Select(s => Path.Combine(root, "expert-" + s)).ToArray(), 0.2, 1.0);
        using var reference = SafetensorsModel.Open(ts);
        Assert.Equal(reference.Tensors.Count, source.Tensors.Count);
        double err = 0, norm = 0, maxAbs = 0;
        foreach (var spec in source.Tensors)
        {
            var got = new float[spec.ElementCount];
            DTypeConversion.ToSingle(source.GetBytes(spec.Name), spec.DType, got);
            var want = Floats(reference, spec.Name);
            for (int j = 0; j < got.Length; j++)
            {
                double d = got[j] - (double)want[j];
                err += d * d;
                norm += (double)want[j] * want[j];
                maxAbs = Math.Max(maxAbs, Math.Abs(d));
            }
        }
        // The reference merged in float64 and rounded to float32; this merge is float32 throughout.
        Assert.True(Math.Sqrt(err / norm) < 1e-6, $"‖ties − ref‖/‖ref‖ = {Math.Sqrt(err / norm):E2}, max |Δ| = {maxAbs:E2}");
    }
}
