using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using CycleQD.Core.Evaluation;
using CycleQD.Runs.Families;
using CycleQD.Runs.Families.Llama;
using CycleQD.Tasks.AgentBenchDb;
using CycleQD.Tensors;

namespace CycleQD.Cli.Commands.Eval;

/// <summary>`cycleqd eval`: scores one model (or a scripted responder) on one task.</summary>
internal static class EvalCommand
{
    private static readonly Option<string> Task = new("--task")
    {
        Description = $"{TextTasks.Names} | {ModelFamilies.Sam.TaskSyntax}.",
        Required = true,
    };

    private static readonly Option<string?> Model = new("--model") { Description = "A Hugging Face model folder to evaluate (a Llama-family model, or a SamModel for sam/* tasks)." };

    private static readonly Option<string?> Responder = new("--responder")
    {
        Description = "scripted:gold: answer from the benchmark data instead of a model (tests the harness alone).",
    };

    private static readonly Option<string?> Split = new("--split")
    {
        Description = "Split to score: tinyskills/* test | valid | train (default test); mbpp and agentbench_* all | train | test (default all; train and test are the even halves a run uses, cut with --split-seed).",
    };

    private static readonly Option<ulong> SplitSeed = NumericOptions.Whole("--split-seed",
        "Seed of the train/test halves of mbpp and agentbench_* (a run's evaluation.split_seed; default 0).", RunSplits.DefaultSeed);

    private static readonly Option<int?> Limit = NumericOptions.OptionalWhole<int>("--limit", "Evaluate only the first N samples.", NumericRange.AtLeast(1));

    private static readonly Option<string> DbLayoutOption = new("--db-layout")
    {
        Description = "AgentBench DB tables: isolated (one database per sample) | reference (one shared server, as the reference; names collide).",
        DefaultValueFactory = _ => "isolated",
    };

    private static readonly Option<string?> DbConnection = new("--db-connection")
    {
        Description = "Use this MySQL/MariaDB server (MySqlConnector connection string) instead of starting a private MariaDB.",
    };

    private static readonly Option<string?> Data = new("--data")
    {
        Description = "The data root, for every task (default: $CYCLEQD_SHARED_DATA, else ../shared/data beside the repository or the current folder): mbpp and agentbench_* read <data>/<task>/, sam/<dataset> reads <data>/segmentation/<dataset>/ (give --dataset DIR for a dataset folder elsewhere).",
    };

    private static readonly Option<string?> Output = new("--output")
    {
        Description = "Where to write the per-sample JSONL (default: runs/eval/<model folder name or responder>-<task>[-<split>].jsonl, so evals of other models do not overwrite each other).",
    };

    private static readonly Option<int> Repeats = NumericOptions.Whole("--repeats",
        "AgentBench OS: runs averaged into the score (the reference uses 5; init scripts draw random data).", 5, NumericRange.AtLeast(1));

    private static readonly Option<bool> NoSanitize = new("--no-sanitize")
    {
        Description = "MBPP+ diagnostic: judge prompt + completion without the reference's sanitiser.",
    };

    private static readonly Option<string?> TinySkills = new("--tinyskills")
    {
        Description = "The TinySkills folder tinyskills/* tasks read (tasks/<task>/<split>.jsonl; default: <data>/models/tinyskills). tinyskills/generic ships in the repository's models/tinyskills.",
    };

    private static readonly Option<string?> TextFile = new("--text")
    {
        Description = "perplexity: the UTF-8 text file to score (tokenised whole with the model's tokenizer after BOS).",
    };

    private static readonly Option<int?> Window = NumericOptions.OptionalWhole<int>("--window",
        "perplexity: most tokens per forward pass (default and upper bound: the model's max_position_embeddings); windows advance by half a window.", NumericRange.AtLeast(2));

    internal static readonly Option<int?> Threads = ThreadsOption.Create("ONNX Runtime intra-op threads of the model (Llama or SAM; refused with --responder, which runs no model)");

    public static Command Create()
    {
        var cmd = new Command("eval", "Score a model (or the scripted gold responder) on one benchmark; prints the score and writes per-sample details as JSONL.");
        foreach (var o in new Option[] { Task, Model, Responder, Split, SplitSeed, Limit, DbLayoutOption, DbConnection, Data, TinySkills, TextFile, Window, Output, NoSanitize, Repeats, Threads,
                     Generate.GenerateCommand.Device, Generate.GenerateCommand.DType, Generate.GenerateCommand.Graph, Commands.Run.RunOutput.Quiet, Commands.Run.RunOutput.Json })
            cmd.Options.Add(o);
        foreach (var o in SamEval.Options)
            cmd.Options.Add(o);
        // System.CommandLine gives its SIGINT/SIGTERM handler the action's task only once the action
        // first yields; a signal before that ends the process with 143 (or 130) at once, without the
        // "interrupted" line. So the action yields before any work, and before the "task:" line that
        // tells a caller the evaluation has begun.
        cmd.SetAction(async (parse, ct) =>
        {
            await System.Threading.Tasks.Task.Yield();
            return await RunAsync(parse, ct).ConfigureAwait(false);
        });
        return cmd;
    }

    private static async Task<int> RunAsync(ParseResult parse, CancellationToken ct)
    {
        var mode = Commands.Run.RunOutput.Mode(parse);
        var stdout = parse.InvocationConfiguration.Output;
        // --quiet and --json print only the result at the end (and errors).
        var o = mode == Commands.Run.RunOutputMode.Normal ? stdout : TextWriter.Null;
        var err = mode == Commands.Run.RunOutputMode.Normal ? parse.InvocationConfiguration.Error : TextWriter.Null;
        string task = parse.GetRequiredValue(Task);
        if (ModelFamilies.Sam.Owns(task))
            return await SamEval.RunAsync(parse, mode, task, parse.GetValue(Model), parse.GetValue(Responder), parse.GetValue(Data), parse.GetValue(Limit), parse.GetValue(Output), ct).ConfigureAwait(false);
        if (parse.GetValue(SamEval.Dataset) is not null) throw new CliUsageException($"--dataset applies to sam/<dataset> tasks only; {task} reads its data under --data");
        if (task == PerplexityBenchmark.TaskName)
            return await PerplexityAsync(parse, mode, o, stdout, ct).ConfigureAwait(false);
        if (parse.GetValue(TextFile) is not null || parse.GetValue(Window) is not null)
            throw new CliUsageException($"--text and --window apply to the perplexity task only, not {task}");
        string? model = parse.GetValue(Model);
        string? responder = parse.GetValue(Responder);
        int? limit = parse.GetValue(Limit);
        if (limit is <= 0) throw new CliUsageException($"--limit must be positive (got {limit})");
        if (model is null == responder is null)
            throw new CliUsageException("give exactly one of --model DIR or --responder scripted:gold");
        if (responder is not null) ThreadsOption.Refuse(parse.GetValue(Threads), "--responder runs no model");
        var runtime = ModelRuntime(parse, responder is null ? null : "--responder runs no model");
        if (responder is not null and not "scripted:gold")
            throw new CliUsageException($"unknown responder '{responder}' (available: scripted:gold)");
        var layout = parse.GetValue(DbLayoutOption) switch
        {
            "isolated" => DbLayout.Isolated,
            "reference" => DbLayout.Reference,
            var other => throw new CliUsageException($"--db-layout must be isolated or reference (got '{other}')"),
        };
        var text = TextTasks.Find(task)
            ?? throw new CliUsageException($"unknown task '{task}' (available: {TextTasks.Names}, {ModelFamilies.Sam.TaskSyntax})");
        string split = parse.GetValue(Split) ?? (text.Splits.Contains("all") ? "all" : "test");
        if (!text.Splits.Contains(split))
            throw new CliUsageException($"--split: {task} has no split '{split}' (it offers {string.Join(", ", text.Splits)})");
        string dataRoot = ResolveDataDir(parse.GetValue(Data));
        int repeats = parse.GetValue(Repeats) > 0 ? parse.GetValue(Repeats) : throw new CliUsageException("--repeats must be positive");
        string tinySkills = parse.GetValue(TinySkills) is { } ts ? Path.GetFullPath(ts) : Path.Combine(dataRoot, "models", "tinyskills");
        if (task.StartsWith("tinyskills/", StringComparison.Ordinal) && !Directory.Exists(Path.Combine(tinySkills, "tasks", task["tinyskills/".Length..])))
            throw new CliUsageException($"{(parse.GetValue(TinySkills) is null ? "--data" : "--tinyskills")}: {tinySkills} has no tasks/{task["tinyskills/".Length..]}/ folder" +
                (parse.GetValue(TinySkills) is null ? " (pass --tinyskills DIR; the repository's models/tinyskills holds every TinySkills task)" : ""));
        var data = new TextTaskData(dataRoot, tinySkills, limit, layout, parse.GetValue(DbConnection), repeats, !parse.GetValue(NoSanitize));
        IBenchmark bench;
        try
        {
            bench = text.Open(data, split, text.IdsOf(data with { Limit = null }, split, parse.GetValue(SplitSeed)));
        }
        catch (ArgumentException e)
        {
            throw new CliUsageException(e.Message);
        }
        string describe = $"{task} / {split} ({Count(() => text.CountSamples(bench))} samples{(task == "agentbench_db" ? $", {layout.ToString().ToLowerInvariant()} layout" : "")})";
        Func<ITextGenerator> gold = () => text.GoldResponder(bench);

        ITextGenerator generator = model is null ? gold() : ModelGenerators.Open(Path.GetFullPath(model), task, parse.GetValue(Threads) ?? 0, runtime.Device, runtime.ElementType, runtime.Graph);
        try
        {
            string output = Path.GetFullPath(parse.GetValue(Output) ?? DefaultOutput(model, responder, task, split == "all" ? null : split));
            o.WriteLine($"task: {task}: {describe}; {(model is null ? "responder " + responder : "model " + Path.GetFullPath(model))}");
            // Read before the run, so a missing environment fails at once with its own message.
            var environment = bench is IPinnedEnvironment pinned ? (pinned.EnvironmentName, pinned.EnvironmentFingerprint) : default;
            if (environment.EnvironmentName != null)
                o.WriteLine($"environment: {environment.EnvironmentName} {environment.EnvironmentFingerprint} (scores compare only under the same hash)");
            var progress = new TextProgress(err);
            var sw = Stopwatch.StartNew();
            var report = await bench.EvaluateAsync(generator, progress, ct).ConfigureAwait(false);
            sw.Stop();
            progress.Finish();
            WriteDetails(output, report, environment.EnvironmentFingerprint);
            var inv = CultureInfo.InvariantCulture;
            string scoreLine = $"score: {report.Score.ToString("0.######", inv)} ({report.Samples.Count(s => s.Correct)}/{report.Samples.Count})";
            o.WriteLine(scoreLine);
            if (report.Metrics.TryGetValue("mbpp_plus_pass@1", out double plus))
                o.WriteLine($"plus score: {plus.ToString("0.######", inv)}");
            foreach (var (k, v) in report.Metrics.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                o.WriteLine($"  {k,-28}{v.ToString("0.######", inv)}");
            double rate = report.Samples.Count / Math.Max(sw.Elapsed.TotalSeconds, 1e-9);
            o.WriteLine($"time: {sw.Elapsed.TotalSeconds.ToString("F2", inv)} s ({rate.ToString("F2", inv)} samples/s)");
            o.WriteLine($"details: {output}");
            WriteResult(stdout, mode, scoreLine, report, task, split, model is null ? null : Path.GetFullPath(model), responder, output, sw.Elapsed.TotalSeconds);
            return 0;
        }
        finally
        {
            (generator as IDisposable)?.Dispose();
        }
    }

    /// <summary>
    /// The model's provider, graph type and graph (--device, --dtype, --graph), checked before anything opens;
    /// <paramref name="noModel"/>, when given, is why a choice other than the defaults is refused.
    /// </summary>
    internal static (Onnx.Runtime.InferenceDevice Device, Onnx.Graph.OnnxElementType ElementType, Onnx.Graph.LlamaGraphKind? Graph) ModelRuntime(ParseResult parse, string? noModel)
    {
        string device = parse.GetValue(Generate.GenerateCommand.Device)!, dtype = parse.GetValue(Generate.GenerateCommand.DType)!;
        string? graph = parse.GetValue(Generate.GenerateCommand.Graph);
        var runtime = Generate.GenerateCommand.ParseRuntime(device, dtype, graph);
        if (noModel is not null && (runtime.Device != Onnx.Runtime.InferenceDevice.Cpu || runtime.ElementType != Onnx.Graph.OnnxElementType.Float || graph is not null))
            throw new CliUsageException($"--device, --dtype and --graph choose how a model runs; {noModel}");
        if (runtime.Device != Onnx.Runtime.InferenceDevice.Cpu) ThreadsOption.Refuse(parse.GetValue(Threads), Generate.GenerateCommand.CudaThreadsWhy);
        return runtime;
    }

    /// <summary>
    /// `eval --task perplexity --text FILE --model DIR`: nats per token and tokens per second of the model over
    /// the text (windows of the model's max length, or --window, advancing by half a window); one JSONL line per window.
    /// </summary>
    private static async Task<int> PerplexityAsync(ParseResult parse, Commands.Run.RunOutputMode mode, TextWriter o, TextWriter stdout, CancellationToken ct)
    {
        string task = PerplexityBenchmark.TaskName;
        if (parse.GetValue(Responder) is not null)
            throw new CliUsageException("perplexity has no gold answers: it scores a model's own probabilities of the text; give --model DIR");
        string model = parse.GetValue(Model) ?? throw new CliUsageException("perplexity needs --model DIR (a Llama-family model folder)");
        string file = parse.GetValue(TextFile) is { } t ? Path.GetFullPath(t) : throw new CliUsageException("perplexity needs --text FILE (a UTF-8 text file)");
        foreach (var (given, name) in new[] { (parse.GetValue(Split) is not null, "--split"), (parse.GetValue(Limit) is not null, "--limit"), (parse.GetValue(TinySkills) is not null, "--tinyskills") })
            if (given) throw new CliUsageException($"{name} does not apply to perplexity (it scores the whole --text file)");
        // Checked before the model is opened, so a bad file fails at once with its own message.
        PerplexityBenchmark.ReadText(file);
        string modelDir = Path.GetFullPath(model);
        if (!Directory.Exists(modelDir)) throw new DirectoryNotFoundException($"model folder not found: {modelDir}");
        ModelKindCheck.Require(modelDir, ModelFamilies.Llama, $"eval --task {task}");
        int threads = parse.GetValue(Threads) ?? 0;
        var runtime = ModelRuntime(parse, null);
        using var llm = Onnx.Runtime.LlamaModel.Open(modelDir, runtime.Device, intraOpThreads: threads, elementType: runtime.ElementType, graph: runtime.Graph);
        using var scorer = llm.CreateScorer(intraOpThreads: threads);
        var bench = new PerplexityBenchmark(file, parse.GetValue(Window));
        string output = Path.GetFullPath(parse.GetValue(Output) ?? DefaultOutput(model, null, task, null));
        o.WriteLine($"task: {task}: {file}; model {modelDir}");
        var sw = Stopwatch.StartNew();
        var report = await bench.ScoreAsync(scorer, llm.Tokenizer, ct).ConfigureAwait(false);
        sw.Stop();
        WriteDetails(output, report);
        var inv = CultureInfo.InvariantCulture;
        string scoreLine = $"score: {report.Score.ToString("0.######", inv)} nats/token (lower is better; perplexity {report.Metrics["perplexity"].ToString("0.####", inv)})";
        o.WriteLine(scoreLine);
        foreach (var (k, v) in report.Metrics.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            o.WriteLine($"  {k,-28}{v.ToString("0.######", inv)}");
        o.WriteLine($"time: {sw.Elapsed.TotalSeconds.ToString("F2", inv)} s ({report.Metrics["tokens_per_second"].ToString("F1", inv)} tokens/s)");
        o.WriteLine($"details: {output}");
        WriteResult(stdout, mode, scoreLine, report, task, null, modelDir, null, output, sw.Elapsed.TotalSeconds);
        return 0;
    }

    /// <summary>
    /// runs/eval/&lt;who&gt;-&lt;task&gt;[-&lt;split&gt;].jsonl: who is the model folder's name (or the
    /// responder's, "scripted-gold"), '/' and ':' become '-', so every model and task has its own file.
    /// </summary>
    internal static string DefaultOutput(string? model, string? responder, string task, string? split)
    {
        string who = model is not null ? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(model))) : responder ?? "model";
        static string Safe(string s) => s.Replace('/', '-').Replace(':', '-');
        return Path.Combine("runs", "eval", $"{Safe(who)}-{Safe(task)}{(split is null ? "" : "-" + Safe(split))}.jsonl");
    }

    /// <summary>What --quiet (the score line) and --json (one object: task, split, model or responder, score, metrics, details file, seconds) print at the end.</summary>
    internal static void WriteResult(TextWriter stdout, Commands.Run.RunOutputMode mode, string scoreLine, EvaluationReport report, string task, string? split,
        string? model, string? responder, string details, double seconds)
    {
        if (mode == Commands.Run.RunOutputMode.Quiet) stdout.WriteLine(scoreLine);
        if (mode != Commands.Run.RunOutputMode.Json) return;
        var metrics = new System.Text.Json.Nodes.JsonObject();
        foreach (var (k, v) in report.Metrics.OrderBy(kv => kv.Key, StringComparer.Ordinal)) metrics[k] = v;
        var o = new System.Text.Json.Nodes.JsonObject
        {
            ["task"] = task, ["split"] = split, ["model"] = model, ["responder"] = responder,
            ["score"] = report.Score, ["correct"] = report.Samples.Count(s => s.Correct), ["samples"] = report.Samples.Count,
            ["metrics"] = metrics, ["details"] = details, ["seconds"] = Math.Round(seconds, 3),
        };
        stdout.WriteLine(o.ToJsonString(ReadableJson.Compact));
    }

    private static int Count(Func<int> count)
    {
        try
        {
            return count();
        }
        catch (ArgumentException e)
        {
            throw new CliUsageException(e.Message);
        }
    }

    internal static string ResolveDataDir(string? given)
    {
        if (given != null)
        {
            if (!Directory.Exists(given)) throw new DirectoryNotFoundException($"data folder not found: {Path.GetFullPath(given)}");
            return Path.GetFullPath(given);
        }
        string? env = Environment.GetEnvironmentVariable("CYCLEQD_SHARED_DATA");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(env)) return Path.GetFullPath(env);
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "CycleQD.Native.sln")))
            {
                string beside = Path.GetFullPath(Path.Combine(d.FullName, "..", "shared", "data"));
                if (Directory.Exists(beside)) return beside;
            }
        foreach (var candidate in new[] { Path.Combine("..", "shared", "data"), Path.Combine("shared", "data") })
            if (Directory.Exists(candidate)) return Path.GetFullPath(candidate);
        throw new CliUsageException("benchmark data folder not found: pass --data DIR or set CYCLEQD_SHARED_DATA");
    }

    /// <summary>One JSON line per sample; with <paramref name="environment"/> (a pinned environment's hash), each line carries it.</summary>
    internal static void WriteDetails(string path, EvaluationReport report, string? environment = null)
    {
        SafetensorsWriter.WriteAtomically(path, fs =>
        {
            using var w = new StreamWriter(fs, leaveOpen: true);
            foreach (var s in report.Samples)
                w.WriteLine(environment is null
                    ? JsonSerializer.Serialize(new { id = s.Id, correct = s.Correct, reason = s.Reason, prompt = s.Prompt, transcript = s.Transcript }, ReadableJson.Compact)
                    : JsonSerializer.Serialize(new { id = s.Id, correct = s.Correct, reason = s.Reason, prompt = s.Prompt, transcript = s.Transcript, environment }, ReadableJson.Compact));
        });
    }

    /// <summary>A one-line progress bar on stderr (redrawn in place on a terminal, a line per 10 % otherwise).</summary>
    internal sealed class TextProgress(TextWriter err) : IProgress<EvaluationProgress>
    {
        private readonly bool _terminal = ReferenceEquals(err, Console.Error) && !Console.IsErrorRedirected;
        private int _lastDecile = -1;
        private bool _drawn;

        public void Report(EvaluationProgress p)
        {
            lock (this)
            {
                int width = 30;
                int filled = p.Total == 0 ? width : p.Done * width / p.Total;
                string bar = $"{p.Task} [{new string('#', filled)}{new string('.', width - filled)}] {p.Done}/{p.Total}";
                if (_terminal)
                {
                    err.Write("\r" + bar);
                    _drawn = true;
                }
                else
                {
                    int decile = p.Total == 0 ? 10 : p.Done * 10 / p.Total;
                    if (decile != _lastDecile) { err.WriteLine(bar); _lastDecile = decile; }
                }
            }
        }

        public void Finish()
        {
            lock (this) if (_drawn) err.WriteLine();
        }
    }
}
