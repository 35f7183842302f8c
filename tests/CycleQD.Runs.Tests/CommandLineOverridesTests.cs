using CycleQD.Core;
using CycleQD.Runs.Families;
using CycleQD.Runs.Final;
using CycleQD.Runs.Merging;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

/// <summary>What the command line changes in an experiment (run --limit/--no-final/--base-dir), and the lines a person reads.</summary>
public class CommandLineOverridesTests
{
    [Fact]
    public void WithOverrides_Limit_ReplacesEvaluationLimitOnEverySamDataset()
    {
        var c = ExperimentConfig.Load(Path.Combine(TestPaths.RepoRoot, "examples", "sam-tiny.yaml"));
        Assert.NotNull(c.Evaluation.Sam);
        var o = c.WithOverrides(3, noFinal: false);
        Assert.Equal(3, o.Evaluation.Limit);
        Assert.All(o.Evaluation.Sam!.Values, s => Assert.Equal(3, s.Data.Limit));
        if (o.Evaluation.SamReport is { } report) Assert.All(report.Values, s => Assert.Equal(3, s.Data.Limit));
        Assert.Equal(c.FinalMerge, o.FinalMerge);
    }

    [Fact]
    public void WithOverrides_NoFinal_TurnsTheFinalStageOff_NullKeepsTheExperiment()
    {
        var c = ExperimentConfig.Load(Path.Combine(TestPaths.RepoRoot, "examples", "tinyskills.yaml"));
        Assert.True(c.FinalMerge.Enabled);
        Assert.False(c.WithOverrides(null, noFinal: true).FinalMerge.Enabled);
        Assert.Equal(c.Evaluation, c.WithOverrides(null, noFinal: false).Evaluation);
        Assert.Throws<ConfigurationException>(() => c.WithOverrides(0, noFinal: false));
    }

    [Fact]
    public void Load_BaseDirectory_ResolvesRelativeModelPathsThere()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("exp.yaml"), "tasks: [tinyskills/code]\nmodel: { base: base, experts: { tinyskills/code: expert-code } }\nevaluation: { tinyskills: . }\n");
        Directory.CreateDirectory(dir.File("tasks"));
        string tiny = Path.Combine(TestPaths.RepoRoot, "models", "tinyskills");
        Assert.Equal(dir.File("base"), ExperimentConfig.Load(dir.File("exp.yaml")).Model.BasePath);
        var c = ExperimentConfig.Load(dir.File("exp.yaml"), tiny);
        Assert.Equal(Path.Combine(tiny, "base"), c.Model.BasePath);
        Assert.Equal(Path.Combine(tiny, "expert-code"), c.Model.ExpertPaths[0].Value);
        Assert.Equal(tiny, c.Evaluation.TinySkillsDir);
    }

    [Theory]
    [InlineData("tinyskills/code", "code")]
    [InlineData("agentbench_db", "db")]
    [InlineData("mbpp", "mbpp")]
    [InlineData("sam/kvasir", "kvasir")]
    public void TaskLabel_Short(string task, string expected) => Assert.Equal(expected, TaskLabels.Short(task));

    [Fact]
    public void TaskLabels_WhenShortNamesCollide_KeepTheFullNames()
    {
        Assert.Equal(["code", "db", "os"], TaskLabels.ShortAll(["tinyskills/code", "agentbench_db", "agentbench_os"]));
        Assert.Equal(["x/db", "agentbench_db"], TaskLabels.ShortAll(["x/db", "agentbench_db"]));
    }

    [Fact]
    public void FinalTrialLine_LabelledWithCountOfMaxAndEta()
    {
        var t = new MergeTrial([1, 0.5], [0.4, 0.2]);
        Assert.Equal("final: weight search trial 2/10: weights [1, 0.5] valid average 30.0 %  eta 00:00:48",
            FinalStage.TrialLine(2, 10, t, "valid", TimeSpan.FromSeconds(12)));
        Assert.EndsWith("eta 00:00:00", FinalStage.TrialLine(10, 10, t, "valid", TimeSpan.FromSeconds(60)));
    }

    [Theory]
    [InlineData("meta-llama/Meta-Llama-3-8B", true)]
    [InlineData("Qwen/Qwen2.5-7B-Instruct", true)]
    [InlineData("./models/x", false)]
    [InlineData("../x", false)]
    [InlineData("/abs/x", false)]
    [InlineData("a/b/c", false)]
    [InlineData("plain", false)]
    public void LooksLikeHubId(string path, bool expected) => Assert.Equal(expected, MergeConfig.LooksLikeHubId(path));

    [Fact]
    public void MergeConfig_HubName_SaysLocalFoldersOnlyAndHowToDownload()
    {
        var e = Assert.Throws<ConfigurationException>(() => MergeConfig.Parse(
            "merge_method: task_arithmetic\nbase_model: meta-llama/Meta-Llama-3-8B\nmodels:\n  - model: x\n    parameters: { weight: 1 }\n", "m.yaml", "/tmp"));
        Assert.Contains("m.yaml: line 2: base_model: 'meta-llama/Meta-Llama-3-8B' is not a local folder", e.Message);
        Assert.Contains("only local model folders are supported", e.Message);
        Assert.Contains("huggingface-cli download meta-llama/Meta-Llama-3-8B --local-dir models/Meta-Llama-3-8B", e.Message);
    }

    [Fact]
    public void CardPaths_AbsolutePathsShortened_RunFilesRelative()
    {
        Assert.Equal("model:\n  base: …/llama-8b\n  experts: { code: …/expert-code, db: ../rel/db }\nname: x/y\n",
            Export.FinalModelCard.WithoutMachinePaths("model:\n  base: /data/models/llama-8b\n  experts: { code: /data/expert-code/, db: ../rel/db }\nname: x/y\n"));
        Assert.Equal(Path.Combine("final", "model.safetensors"), Export.FinalModelCard.ShownPath("/runs/r1", "/runs/r1/final/model.safetensors"));
        Assert.Equal("…/expert-db/model.safetensors", Export.FinalModelCard.ShownPath("/runs/r1", "/models/expert-db/model.safetensors"));
        Assert.Equal("search=valid;limit=4;data=…/tinyskills", Export.FinalModelCard.WithoutMachinePaths("search=valid;limit=4;data=/work/models/tinyskills"));
        var json = Export.FinalModelCard.WithoutMachinePaths(System.Text.Json.Nodes.JsonNode.Parse("""{"base_model": "/m/llama", "evaluation": "data=/d/x;k=1", "n": 3}""")!);
        Assert.Equal("""{"base_model":"llama","evaluation":"data=…/x;k=1","n":3}""", json.ToJsonString(Tensors.ReadableJson.Compact));
        Assert.Equal("expert code", Export.FinalModelCard.EliteName("expert:tinyskills/code"));
        Assert.Equal("0123456789ab", Export.FinalModelCard.EliteName("0123456789abcdef0123"));
    }
}
