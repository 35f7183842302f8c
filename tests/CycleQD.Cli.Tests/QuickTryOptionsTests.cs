using System.Text.Json.Nodes;
using CycleQD.Cli.Commands.Eval;
using CycleQD.Core.Evaluation;
using CycleQD.Testing;

namespace CycleQD.Cli.Tests;

/// <summary>run --limit/--no-final/--base-dir, labelled progress lines, eval's output names, readable JSON, --chat on the shipped models.</summary>
public class QuickTryOptionsTests
{
    private static readonly string TinySkills = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");

    // Relative paths only: they must resolve against --base-dir (the TinySkills folder), not the file's folder.
    private const string RelativeExperiment = """
        name: quick
        seed: 2
        generations: 1
        tasks: [tinyskills/code, tinyskills/db, tinyskills/os]
        model:
          base: base
          experts:
            tinyskills/code: expert-code
            tinyskills/db: expert-db
            tinyskills/os: expert-os
        evaluation: { split: valid, tinyskills: . }
        """;

    [Fact]
    public void Run_LimitNoFinalBaseDir_RecordedInRunJson_NoFinalStage_AndResumeKeepsThem()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), RelativeExperiment);
        string run = dir.File("run");
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", run, "--device", "cpu", "--limit", "2", "--no-final", "--base-dir", TinySkills);
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        Assert.DoesNotContain("Test split", r.Out);
        Assert.False(Directory.Exists(Path.Combine(run, "final")));
        var info = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "run.json")))!;
        Assert.Equal(2, info["limit"]!.GetValue<int>());
        Assert.False(info["final"]!.GetValue<bool>());
        Assert.Equal(TinySkills, info["config_directory"]!.GetValue<string>());
        // Two samples per task: each score is a multiple of 1/2.
        var metrics = JsonNode.Parse(File.ReadAllLines(Path.Combine(run, "metrics.jsonl"))[0])!;
        foreach (var s in metrics["scores"]!.AsObject()) Assert.Contains(s.Value!.GetValue<double>(), new[] { 0.0, 0.5, 1.0 });
        Assert.Matches(@"(?m)^gen 1/1  quality (code|db|os)  child code \d\.\d{3} db \d\.\d{3} os \d\.\d{3}  improved \d+  qd code \d+\.\d\d db \d+\.\d\d os \d+\.\d\d  eta ", r.Out);

        var again = CliRunner.Run("resume", run, "--generations", "2", "--device", "cpu");
        Assert.True(again.ExitCode == 0, again.Err + again.Out);
        Assert.Contains("gen 2/2", again.Out);
        Assert.False(Directory.Exists(Path.Combine(run, "final")));
    }

    [Fact]
    public void Run_RelativePathsWithoutBaseDir_ResolveAgainstTheFilesFolder_AndNameIt()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), RelativeExperiment);
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--device", "cpu", "--limit", "2");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Contains($"{dir.Path} has no tasks/ folder", r.Err);
        Assert.False(Directory.Exists(dir.File("run")));
    }

    [Fact]
    public void Run_BaseDirMissing_OneErrorNamingTheOption()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), RelativeExperiment);
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--base-dir", dir.File("nowhere"));
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Equal($"error: --base-dir: folder not found: {dir.File("nowhere")}", r.Err.Trim());
    }

    [Fact]
    public void RunHelp_StatesTheRelativePathRule()
    {
        var r = CliRunner.Run("run", "--help");
        Assert.Contains("resolved against the file's own folder", r.Out);
        Assert.Contains("--base-dir", r.Out);
        Assert.Contains("--limit", r.Out);
        Assert.Contains("--no-final", r.Out);
    }

    [Theory]
    [InlineData("models/tinyskills/base", null, "tinyskills/code", "test", "runs/eval/base-tinyskills-code-test.jsonl")]
    [InlineData("/data/expert-db/", null, "agentbench_db", null, "runs/eval/expert-db-agentbench_db.jsonl")]
    [InlineData(null, "scripted:gold", "mbpp", "train", "runs/eval/scripted-gold-mbpp-train.jsonl")]
    public void EvalDefaultOutput_NamesModelOrResponderTaskAndSplit(string? model, string? responder, string task, string? split, string expected) =>
        Assert.Equal(expected, EvalCommand.DefaultOutput(model, responder, task, split).Replace('\\', '/'));

    [Fact]
    public void EvalDetails_ApostrophesAndNonAscii_WrittenAsThemselves()
    {
        using var dir = new TempDir();
        var report = new EvaluationReport("t", 1, new Dictionary<string, double>(),
            [new SampleOutcome("1", true, "what's the café's <name>?", ["it's \"Zoë\""], "ok")]);
        EvalCommand.WriteDetails(dir.File("d.jsonl"), report);
        string line = File.ReadAllText(dir.File("d.jsonl"));
        Assert.Contains("what's the café's <name>?", line);
        Assert.Contains("it's \\\"Zoë\\\"", line);
        Assert.DoesNotContain("\\u", line);
        Assert.Equal("what's the café's <name>?", JsonNode.Parse(line)!["prompt"]!.GetValue<string>());
    }

    [Fact]
    public void SamDataset_DataIsTheRoot_DatasetIsExplicit_OldDatasetFolderWarns()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("root/segmentation/kvasir/images"));
        Directory.CreateDirectory(dir.File("only/images"));
        var err = new StringWriter();
        Assert.Equal(dir.File("root/segmentation/kvasir"), SamEval.DatasetFolder("kvasir", null, dir.File("root"), "images", err));
        Assert.Equal(dir.File("only"), SamEval.DatasetFolder("kvasir", dir.File("only"), null, "images", err));
        Assert.Equal("", err.ToString());
        Assert.Equal(dir.File("only"), SamEval.DatasetFolder("kvasir", null, dir.File("only"), "images", err));
        Assert.Contains("--data is the data root", err.ToString());
        Assert.Contains("--dataset " + dir.File("only"), err.ToString());
        var missing = Assert.Throws<DirectoryNotFoundException>(() => SamEval.DatasetFolder("isic", null, dir.File("root"), "images", TextWriter.Null));
        Assert.Contains(dir.File("root/segmentation/isic"), missing.Message);
        Assert.Throws<CliUsageException>(() => SamEval.DatasetFolder("kvasir", dir.File("only"), dir.File("root"), "images", TextWriter.Null));
    }

    [Fact]
    public void EvalDataset_OnATextTask_IsRefused()
    {
        var r = CliRunner.Run("eval", "--task", "tinyskills/code", "--responder", "scripted:gold", "--dataset", "x");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Contains("--dataset applies to sam/<dataset> tasks only", r.Err);
    }

    [Theory]
    [InlineData("base")]
    [InlineData("expert-code")]
    [InlineData("expert-db")]
    [InlineData("expert-os")]
    public void GenerateChat_OnEveryShippedTinySkillsModel_RendersWithoutWarning(string folder)
    {
        var r = CliRunner.Run("generate", "--model", Path.Combine(TinySkills, folder), "--prompt", "echo hi", "--chat", "--max-new-tokens", "4");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        Assert.DoesNotContain("warning", r.Err);
    }

    [Fact]
    public void GenerateChat_Llama3TemplateOnASmallVocabulary_WarnsPerMissingSpecialToken()
    {
        using var dir = new TempDir();
        string copy = dir.File("model");
        Directory.CreateDirectory(copy);
        foreach (var f in Directory.GetFiles(Path.Combine(TinySkills, "base"))) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(copy, "tokenizer_config.json")))!.AsObject();
        config["chat_template"] = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}";
        File.WriteAllText(Path.Combine(copy, "tokenizer_config.json"), config.ToJsonString());
        var r = CliRunner.Run("generate", "--model", copy, "--prompt", "hi", "--chat", "--max-new-tokens", "2");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        foreach (var token in new[] { "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>" })
            Assert.Contains($"warning: --chat: the chat template's special token {token} is not in the vocabulary", r.Err);
    }

    private const string Synthetic = """
        name: quiet-test
        seed: 4
        generations: 3
        tasks: [a, b, c]
        model:
          synthetic: { layers: 2, rows: 16, cols: 8, dtype: f32, seed: 1 }
        archive: { bins: 4 }
        """;

    [Fact]
    public void RunQuiet_PrintsOnlyTheResultLine()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Synthetic);
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--quiet");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        var line = Assert.Single(r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Matches(@"^done: .+run: 3 generations; best a \S+ b \S+ c \S+$", line);
    }

    [Fact]
    public void RunJson_OneObjectWithRunDirGenerationsAndArchives_ResumeJsonToo()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Synthetic);
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--json");
        Assert.True(r.ExitCode == 0, r.Err + r.Out);
        var o = JsonNode.Parse(r.Out)!.AsObject();
        Assert.Equal(dir.File("run"), o["run_dir"]!.GetValue<string>());
        Assert.Equal("done", o["status"]!.GetValue<string>());
        Assert.Equal(3, o["generations"]!.GetValue<int>());
        var archives = o["archives"]!.AsArray();
        Assert.Equal(["a", "b", "c"], archives.Select(a => a!["task"]!.GetValue<string>()));
        Assert.All(archives, a => Assert.True(a!["elites"]!.GetValue<int>() >= 1));
        Assert.Null(o["report"]);

        var again = CliRunner.Run("resume", dir.File("run"), "--generations", "5", "--json");
        Assert.True(again.ExitCode == 0, again.Err + again.Out);
        Assert.Equal(5, JsonNode.Parse(again.Out)!["generations"]!.GetValue<int>());
    }

    [Fact]
    public void RunQuietAndJson_Together_Refused()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), Synthetic);
        var r = CliRunner.Run("run", dir.File("exp.yaml"), "--out", dir.File("run"), "--quiet", "--json");
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.Equal("error: give --quiet or --json, not both", r.Err.Trim());
    }

    [Fact]
    public void EvalQuietAndJson_PrintOnlyTheResult()
    {
        using var dir = new TempDir();
        string[] common = ["eval", "--task", "tinyskills/db", "--split", "test", "--limit", "5", "--responder", "scripted:gold", "--data", TestPaths.RepoRoot];
        var q = CliRunner.Run([.. common, "--output", dir.File("q.jsonl"), "--quiet"]);
        Assert.True(q.ExitCode == 0, q.Err + q.Out);
        Assert.Equal("score: 1 (5/5)", q.Out.Trim());
        Assert.Equal("", q.Err);
        var j = CliRunner.Run([.. common, "--output", dir.File("j.jsonl"), "--json"]);
        Assert.True(j.ExitCode == 0, j.Err + j.Out);
        var o = JsonNode.Parse(j.Out)!;
        Assert.Equal(1.0, o["score"]!.GetValue<double>());
        Assert.Equal(5, o["samples"]!.GetValue<int>());
        Assert.Equal("scripted:gold", o["responder"]!.GetValue<string>());
        Assert.Equal(dir.File("j.jsonl"), o["details"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("merge", "x.yaml", "--out", "o", "--threads", "2")]
    [InlineData("inspect", "x", "--threads", "2")]
    [InlineData("eval", "--task", "tinyskills/db", "--responder", "scripted:gold", "--threads", "2")]
    [InlineData("generate", "--model", "x", "--prompt", "p", "--device", "cuda", "--threads", "2")]
    public void Threads_WhereItHasNoEffect_IsRefusedWithTheReason(params string[] args)
    {
        var r = CliRunner.Run(args);
        Assert.Equal(CliApp.ExitBadInput, r.ExitCode);
        Assert.StartsWith("error: --threads has no effect here: ", r.Err);
    }

    [Fact]
    public void Threads_SetsOpenBlasThreads()
    {
        int? before = CycleQD.Cpu.CpuNativeLibraries.OpenBlasThreads();
        Assert.SkipWhen(before is null, "OpenBLAS is not installed");
        try
        {
            ThreadsOption.ApplyToOpenBlas(1);
            Assert.Equal(1, CycleQD.Cpu.CpuNativeLibraries.OpenBlasThreads());
        }
        finally
        {
            CycleQD.Cpu.CpuNativeLibraries.SetOpenBlasThreads(before!.Value);
        }
    }
}
