using System.Globalization;
using CycleQD.Core;
using CycleQD.Core.Evaluation;
using CycleQD.Tasks.AgentBenchDb;
using CycleQD.Tasks.AgentBenchOs;
using CycleQD.Tasks.Database;
using CycleQD.Tasks.Mbpp;
using CycleQD.Tasks.Sandbox;
using CycleQD.Tasks.Scripted;
using CycleQD.Tasks.TinySkills;

namespace CycleQD.Runs.Families.Llama;

/// <summary>Where the text benchmarks read their data, and the harness settings shared by `run` and `eval`.</summary>
/// <param name="DataDir">The benchmark data root (holds mbpp/, agentbench_db/, agentbench_os/ and cycleqd_prompts.json); null when no task needs it.</param>
/// <param name="TinySkillsDir">The TinySkills folder (holds tasks/&lt;skill&gt;/&lt;split&gt;.jsonl); null when no tinyskills task is used.</param>
/// <param name="Limit">Only the first N samples of each split.</param>
/// <param name="DbLayout">AgentBench DB: one database per sample (isolated, the default) or the reference's shared names.</param>
/// <param name="DbConnection">AgentBench DB: an existing server's connection string instead of a private MariaDB.</param>
/// <param name="OsRepeats">AgentBench OS: runs averaged into the score.</param>
/// <param name="MbppSanitize">MBPP+: apply the reference's sanitiser to completions.</param>
/// <param name="MbppTotalTimeCap">MBPP+: bound in seconds on one run of a task's inputs (null: none, as EvalPlus).</param>
public sealed record TextTaskData(string? DataDir, string? TinySkillsDir, int? Limit = null, DbLayout DbLayout = DbLayout.Isolated,
    string? DbConnection = null, int OsRepeats = 5, bool MbppSanitize = true, double? MbppTotalTimeCap = MbppPlusOptions.DefaultTotalTimeCapSeconds)
{
    /// <summary>The UTF-8 text file the perplexity task scores (absolute); null when that task is not used.</summary>
    public string? PerplexityFile { get; init; }

    /// <summary>Most tokens per perplexity window (null: the model's max_position_embeddings).</summary>
    public int? PerplexityWindow { get; init; }
}

/// <summary>
/// One text benchmark a Llama-family model can be scored on: its name, the splits it offers, its
/// sample ids, and how to open it on a split. Registered once in <see cref="TextTasks"/>.
/// </summary>
public abstract class TextTask
{
    /// <summary>Task name as experiments and `eval --task` spell it.</summary>
    public abstract string Name { get; }

    /// <summary>The split names it offers; the first is the default search split.</summary>
    public abstract IReadOnlyList<string> Splits { get; }

    /// <summary>Most model calls per sample (rounds of a dialogue) and the most new tokens per call.</summary>
    public abstract (int CallsPerSample, int MaxNewTokens) CallBudget(TextTaskData data);

    /// <summary>
    /// The ids of every sample, in the benchmark's order, for tasks whose train/test halves are cut by
    /// <see cref="RunSplits.Halves"/>; null for tasks that ship their own split files.
    /// </summary>
    public abstract IReadOnlyList<string>? AllIds(TextTaskData data);

    /// <summary>The benchmark over <paramref name="ids"/> (null: the named split <paramref name="split"/>, or every sample for "all").</summary>
    public abstract IBenchmark Open(TextTaskData data, string split, IReadOnlyList<string>? ids);

    /// <summary>Samples <paramref name="benchmark"/> (opened by <see cref="Open"/>) scores.</summary>
    public abstract int CountSamples(IBenchmark benchmark);

    /// <summary>A responder that answers every sample of the benchmark with its gold answer (tests the harness alone).</summary>
    public abstract ScriptedResponder GoldResponder(IBenchmark benchmark);

    /// <summary>Whether a lower score is better (perplexity's nats per token); false for accuracies in [0, 1].</summary>
    public virtual bool LowerIsBetter => false;

    /// <summary>What the score is, for tables and report.json: "accuracy", or "nats/token".</summary>
    public virtual string Unit => "accuracy";

    /// <summary>Checks the data this task reads; throws <see cref="ConfigurationException"/> naming the setting that points at it.</summary>
    public abstract void CheckData(TextTaskData data);

    /// <summary>Starts and stops the task's environment (sandbox, database); throws naming the cause.</summary>
    public virtual Task CheckEnvironmentAsync(TextTaskData data, CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>The named split's ids: the train or test half (cut with <paramref name="seed"/>), or all.</summary>
    public IReadOnlyList<string>? IdsOf(TextTaskData data, string split, ulong seed)
    {
        var all = AllIds(data);
        if (all is null) return null;
        if (split == "all") return all;
        var (train, test) = RunSplits.Halves(all, Name, seed);
        return split switch
        {
            "train" => train,
            "test" => test,
            _ => throw new ConfigurationException($"{Name}: no split '{split}' (known: {string.Join(", ", Splits)})"),
        };
    }

    /// <summary>Runs a trivial command in the project's sandbox (bubblewrap, prlimit, an unprivileged uid).</summary>
    protected static async Task CheckSandboxAsync(CancellationToken ct)
    {
        var sandbox = BubblewrapSandbox.Create();
        var r = await sandbox.RunAsync(new SandboxRequest { Command = ["/bin/true"] }, ct).ConfigureAwait(false);
        if (r.ExitCode != 0)
            throw new SandboxUnavailableException($"a trivial command failed in the sandbox (exit {r.ExitCode}): {r.Stderr.Trim()}");
    }

    /// <summary>Throws naming evaluation.data unless the data root holds the file at <paramref name="relative"/>.</summary>
    protected void RequireFile(TextTaskData data, params string[] relative)
    {
        if (data.DataDir is null)
            throw new ConfigurationException($"evaluation.data: task {Name} needs the benchmark data folder (holding {relative[0]}/)");
        string path = Path.Combine([data.DataDir, .. relative]);
        if (!File.Exists(path)) throw new ConfigurationException($"evaluation.data: {path} not found (task {Name} reads {Path.Combine(relative)} there)");
    }
}

/// <summary>The catalog of text benchmarks: the one table `run`, `eval` and the experiment parser look task names up in.</summary>
public static class TextTasks
{
    /// <summary>Every registered task, in the order messages list them.</summary>
    public static IReadOnlyList<TextTask> All { get; } =
    [
        new MbppTask(),
        new AgentBenchDbTask(),
        new AgentBenchOsTask(),
        .. TinySkillsBenchmark.Skills.Select(s => new TinySkillsTask(s, ["valid", "test", "train"])),
        // The instruct base's own tasks ship without their train split: nothing trains on them here.
        new TinySkillsTask(TinySkillsBenchmark.Generic, ["valid", "test"]),
        new PerplexityTask(),
    ];

    /// <summary>The task named <paramref name="name"/>, or null.</summary>
    public static TextTask? Find(string name) => All.FirstOrDefault(t => t.Name == name);

    /// <summary>The names, for messages: "mbpp, agentbench_db, agentbench_os, tinyskills/code, …".</summary>
    public static string Names => string.Join(", ", All.Select(t => t.Name));

    private sealed class MbppTask : TextTask
    {
        public override string Name => "mbpp";
        public override IReadOnlyList<string> Splits { get; } = ["train", "test", "all"];
        public override (int, int) CallBudget(TextTaskData data) => (1, new MbppPlusOptions { DataDir = "" }.MaxNewTokens);
        public override IReadOnlyList<string> AllIds(TextTaskData data) =>
            new MbppPlusBenchmark(Options(data, null) with { Limit = null }).SelectedProblems().Select(p => p.TaskId).ToArray();
        public override IBenchmark Open(TextTaskData data, string split, IReadOnlyList<string>? ids) => new MbppPlusBenchmark(Options(data, ids));
        public override ScriptedResponder GoldResponder(IBenchmark benchmark) => ((MbppPlusBenchmark)benchmark).CreateGoldResponder();
        public override int CountSamples(IBenchmark benchmark) => ((MbppPlusBenchmark)benchmark).SelectedProblems().Count;
        public override void CheckData(TextTaskData data) => RequireFile(data, "mbpp", "MbppPlus-v0.1.0.jsonl");
        public override Task CheckEnvironmentAsync(TextTaskData data, CancellationToken ct) => CheckSandboxAsync(ct);
        private static MbppPlusOptions Options(TextTaskData data, IReadOnlyList<string>? ids) =>
            new() { DataDir = data.DataDir!, TaskIds = ids, Limit = data.Limit, Sanitize = data.MbppSanitize, TotalTimeCapSeconds = data.MbppTotalTimeCap };
    }

    private sealed class AgentBenchDbTask : TextTask
    {
        public override string Name => "agentbench_db";
        public override IReadOnlyList<string> Splits { get; } = ["train", "test", "all"];
        public override (int, int) CallBudget(TextTaskData data)
        {
            var o = new AgentBenchDbOptions { DataDir = "" };
            return (o.MaxRound + 1, o.MaxNewTokens);
        }
        public override IReadOnlyList<string> AllIds(TextTaskData data) =>
            new AgentBenchDbBenchmark(Options(data, null) with { Limit = null }).SelectedRecords().Select(r => r.Index.ToString(CultureInfo.InvariantCulture)).ToArray();
        public override IBenchmark Open(TextTaskData data, string split, IReadOnlyList<string>? ids) => new AgentBenchDbBenchmark(Options(data, ids));
        public override ScriptedResponder GoldResponder(IBenchmark benchmark) => ((AgentBenchDbBenchmark)benchmark).CreateGoldResponder();
        public override int CountSamples(IBenchmark benchmark) => ((AgentBenchDbBenchmark)benchmark).SelectedRecords().Count;
        public override void CheckData(TextTaskData data) => RequireFile(data, "agentbench_db", "data_dbbench_standard_dev.jsonl");
        public override async Task CheckEnvironmentAsync(TextTaskData data, CancellationToken ct)
        {
            await CheckSandboxAsync(ct).ConfigureAwait(false);
            if (data.DbConnection is { } cs)
            {
                await using var connection = new MySqlConnector.MySqlConnection(cs);
                await connection.OpenAsync(ct).ConfigureAwait(false);
                return;
            }
            await using var server = await MariaDbServer.StartAsync(ct).ConfigureAwait(false);
        }
        private static AgentBenchDbOptions Options(TextTaskData data, IReadOnlyList<string>? ids) => new()
        {
            DataDir = data.DataDir!, Ids = ids?.Select(i => int.Parse(i, CultureInfo.InvariantCulture)).ToArray(), Limit = data.Limit,
            Layout = data.DbLayout, ConnectionString = data.DbConnection,
        };
    }

    private sealed class AgentBenchOsTask : TextTask
    {
        public override string Name => "agentbench_os";
        public override IReadOnlyList<string> Splits { get; } = ["train", "test", "all"];
        public override (int, int) CallBudget(TextTaskData data)
        {
            var o = new AgentBenchOsOptions { DataDir = "" };
            return ((o.MaxRound + 1) * data.OsRepeats, o.MaxNewTokens);
        }
        public override IReadOnlyList<string> AllIds(TextTaskData data) =>
            new AgentBenchOsBenchmark(Options(data, null) with { Limit = null }).SelectedSamples().Select(s => s.Index.ToString(CultureInfo.InvariantCulture)).ToArray();
        public override IBenchmark Open(TextTaskData data, string split, IReadOnlyList<string>? ids) => new AgentBenchOsBenchmark(Options(data, ids));
        public override ScriptedResponder GoldResponder(IBenchmark benchmark) => ((AgentBenchOsBenchmark)benchmark).CreateGoldResponder();
        public override int CountSamples(IBenchmark benchmark) => ((AgentBenchOsBenchmark)benchmark).SelectedSamples().Count;
        public override void CheckData(TextTaskData data) => RequireFile(data, "agentbench_os", "samples.json");
        public override Task CheckEnvironmentAsync(TextTaskData data, CancellationToken ct) => CheckSandboxAsync(ct);
        private static AgentBenchOsOptions Options(TextTaskData data, IReadOnlyList<string>? ids) => new()
        {
            DataDir = data.DataDir!, Ids = ids?.Select(i => int.Parse(i, CultureInfo.InvariantCulture)).ToArray(), Limit = data.Limit, Repeats = data.OsRepeats,
        };
    }

    private sealed class TinySkillsTask(string skill, IReadOnlyList<string> splits) : TextTask
    {
        public override string Name => "tinyskills/" + skill;
        public override IReadOnlyList<string> Splits => splits;
        public override (int, int) CallBudget(TextTaskData data) => (1, TinySkillsBenchmark.MaxNewTokens);
        public override IReadOnlyList<string>? AllIds(TextTaskData data) => null;
        public override IBenchmark Open(TextTaskData data, string split, IReadOnlyList<string>? ids) =>
            new TinySkillsBenchmark(new TinySkillsOptions { TinySkillsDir = data.TinySkillsDir!, Skill = skill, Split = split, Limit = data.Limit });
        public override ScriptedResponder GoldResponder(IBenchmark benchmark) => ((TinySkillsBenchmark)benchmark).CreateGoldResponder();
        public override int CountSamples(IBenchmark benchmark) => ((TinySkillsBenchmark)benchmark).Examples().Count;
        public override void CheckData(TextTaskData data)
        {
            if (data.TinySkillsDir is null)
                throw new ConfigurationException("evaluation.tinyskills: tinyskills/* tasks need evaluation.tinyskills: the TinySkills folder (holding tasks/<skill>/<split>.jsonl)");
            if (!Directory.Exists(Path.Combine(data.TinySkillsDir, "tasks")))
                throw new ConfigurationException($"evaluation.tinyskills: {data.TinySkillsDir} has no tasks/ folder");
            // The skills' folders are read when a split is opened; generic is checked here because only the
            // repository's copy of the data has it (the shared data set keeps it under instruct/generic_tasks).
            if (skill == TinySkillsBenchmark.Generic && !Directory.Exists(Path.Combine(data.TinySkillsDir, "tasks", skill)))
                throw new ConfigurationException($"evaluation.tinyskills: {data.TinySkillsDir} has no tasks/{skill}/ folder (task {Name}; the repository's models/tinyskills holds every TinySkills task)");
        }
    }

    private sealed class PerplexityTask : TextTask
    {
        public override string Name => PerplexityBenchmark.TaskName;
        // One "split": the user's text file.
        public override IReadOnlyList<string> Splits { get; } = ["test"];
        public override bool LowerIsBetter => true;
        public override string Unit => "nats/token";
        public override (int, int) CallBudget(TextTaskData data) => (1, 0);
        public override IReadOnlyList<string>? AllIds(TextTaskData data) => null;
        public override IBenchmark Open(TextTaskData data, string split, IReadOnlyList<string>? ids) =>
            new PerplexityBenchmark(data.PerplexityFile ?? throw new ConfigurationException(MissingFile), data.PerplexityWindow);
        public override int CountSamples(IBenchmark benchmark) => 1;
        public override ScriptedResponder GoldResponder(IBenchmark benchmark) =>
            throw new ConfigurationException("perplexity has no gold answers: it scores a model's own probabilities of the text (give a model)");
        public override void CheckData(TextTaskData data)
        {
            if (data.PerplexityFile is not { } file) throw new ConfigurationException(MissingFile);
            try
            {
                PerplexityBenchmark.ReadText(file);
            }
            catch (Exception e) when (e is FileNotFoundException or InvalidDataException or IOException or UnauthorizedAccessException)
            {
                throw new ConfigurationException("evaluation.perplexity.file: " + e.Message);
            }
        }

        private const string MissingFile = "evaluation.perplexity.file: task perplexity needs a UTF-8 text file to score";
    }
}
