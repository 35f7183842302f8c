using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CycleQD.Core.Evaluation;
using CycleQD.Tasks.Prompts;
using CycleQD.Tasks.Python;
using CycleQD.Tasks.Sandbox;
using CycleQD.Tasks.Scripted;

namespace CycleQD.Tasks.Mbpp;

/// <summary>Settings of an MBPP+ evaluation.</summary>
public sealed record MbppPlusOptions
{
    /// <summary>The shared data folder (holds mbpp/MbppPlus-v0.1.0.jsonl and cycleqd_prompts.json).</summary>
    public required string DataDir { get; init; }

    /// <summary>Run only the first N tasks.</summary>
    public int? Limit { get; init; }

    /// <summary>Task ids to run ("Mbpp/2", …); null = all 399.</summary>
    public IReadOnlyList<string>? TaskIds { get; init; }

    /// <summary>Where expected outputs and reference times are cached (one file per task); null = $XDG_CACHE_HOME/cycleqd or ~/.cache/cycleqd.</summary>
    public string? CacheDir { get; init; }

    /// <summary>Tasks judged at once (each in its own sandbox); default: the number of cores.</summary>
    public int Parallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>Also run the plus inputs (plus pass@1 is reported beside the score).</summary>
    public bool RunPlus { get; init; } = true;

    /// <summary>
    /// Apply the reference's sanitiser (default). Off, the code judged is prompt + "\n" + completion
    /// as is: a diagnostic that separates the sanitiser's effect from the tests' verdicts.
    /// </summary>
    public bool Sanitize { get; init; } = true;

    /// <summary>
    /// Bound in seconds on one run of a task's base (or plus) inputs, applied to the sum of the
    /// per-input limits (default 60). EvalPlus has no such bound (null here): a completion that
    /// uses most of each input's limit on 42,000 plus inputs could then hold a sandbox for hours.
    /// </summary>
    public double? TotalTimeCapSeconds { get; init; } = DefaultTotalTimeCapSeconds;

    /// <summary>The default of <see cref="TotalTimeCapSeconds"/>.</summary>
    public const double DefaultTotalTimeCapSeconds = 60;

    /// <summary>Most new tokens (reference: 512).</summary>
    public int MaxNewTokens { get; init; } = 512;

    /// <summary>Context limit in tokens, as the reference's vLLM max_model_len (null = none).</summary>
    public int? MaxModelLen { get; init; } = ReferenceSampling.MaxModelLen;
}

/// <summary>
/// MBPP+ as CycleQD evaluates it (fishfarm tasks/evalplus + tasks/mbpp.py; data README §3): the
/// code chat template with the "```python" prefill, one batch, completion cut at the first ```,
/// the reference's sanitiser, then base and plus inputs in the sandbox with per-input limits
/// max(0.2 s, 4 × reference time) measured here on prompt + canonical_solution. Score = base pass@1;
/// "plus_pass@1" beside it.
/// </summary>
public sealed class MbppPlusBenchmark(MbppPlusOptions options) : IBenchmark
{
    /// <summary>Stop strings of the reference's sampling parameters.</summary>
    public static readonly IReadOnlyList<string> StopStrings = ["Instruction:", "Instruction", "Response:", "Response"];

    /// <summary>The assistant prefill appended after the rendered prompt.</summary>
    public const string ResponsePrefix = "```python";

    private const double MinTimeLimit = 0.2;
    private const double TimeLimitFactor = 4.0;

    private IReadOnlyList<MbppProblem>? _problems;
    private string DataFile => Path.Combine(options.DataDir, "mbpp", "MbppPlus-v0.1.0.jsonl");

    /// <inheritdoc/>
    public string Name => "mbpp";

    /// <summary>The selected tasks, in file order.</summary>
    public IReadOnlyList<MbppProblem> SelectedProblems()
    {
        var all = _problems ??= MbppProblem.Load(DataFile);
        IEnumerable<MbppProblem> sel = all;
        if (options.TaskIds is { } ids)
        {
            var known = all.ToDictionary(p => p.TaskId);
            sel = ids.Select(id => known.TryGetValue(id, out var p) ? p : throw new ArgumentException($"unknown MBPP+ task id '{id}'"));
        }
        if (options.Limit is int n) sel = sel.Take(n);
        return sel.ToList();
    }

    /// <summary>The full prompt text sent to the generator (system + instruction, rendered, plus the prefill).</summary>
    public string PromptFor(MbppProblem p, PromptLibrary prompts) =>
        ChatTemplates.Mbpp(prompts["mbpp.system_message"], p.Instruction()) + ResponsePrefix;

    /// <summary>The generated text up to the first ``` (or all of it).</summary>
    public static string CompletionBody(string generated)
    {
        int i = generated.IndexOf("```", StringComparison.Ordinal);
        return i >= 0 ? generated[..i] : generated;
    }

    /// <inheritdoc/>
    public async Task<EvaluationReport> EvaluateAsync(ITextGenerator generator, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var problems = SelectedProblems();
        var prompts = PromptLibrary.Load(Path.Combine(options.DataDir, "cycleqd_prompts.json"));
        var sandbox = BubblewrapSandbox.Create();
        // Expected outputs first: they do not depend on the model. A task whose canonical run fails
        // is reported as that sample's failure, with the reason.
        var (expected, unavailable) = await ComputeGroundTruthAsync(problems, sandbox, cancellationToken).ConfigureAwait(false);

        var requests = problems.Select(p => new GenerationRequest(PromptFor(p, prompts), options.MaxNewTokens, StopStrings, AddBos: null, MaxModelLen: options.MaxModelLen)).ToList();
        var results = await generator.GenerateAsync(requests, cancellationToken).ConfigureAwait(false);
        if (results.Count != requests.Count)
            throw new InvalidOperationException($"the generator returned {results.Count} results for {requests.Count} requests");

        var outcomes = new SampleOutcome[problems.Count];
        var basePass = new bool[problems.Count];
        var plusPass = new bool[problems.Count];
        int done = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, problems.Count),
            new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, options.Parallelism), CancellationToken = cancellationToken },
            async (i, ct) =>
            {
                var p = problems[i];
                string completion = CompletionBody(results[i].Text);
                // A task whose canonical solution could not be run (broken or hostile data) fails on its own.
                var verdict = expected.TryGetValue(p.TaskId, out var truth)
                    ? await CheckAsync(p, completion, truth, sandbox, ct).ConfigureAwait(false)
                    : Failed("", "failed", "the expected outputs could not be computed: " + unavailable[p.TaskId]);
                basePass[i] = verdict.Base.Status == "success";
                plusPass[i] = basePass[i] && verdict.Plus?.Status == "success";
                string reason = $"base: {verdict.Base.Describe()}" + (verdict.Plus is { } plus ? $"; plus: {plus.Describe()}" : "");
                outcomes[i] = new SampleOutcome(p.TaskId, basePass[i], requests[i].Prompt,
                    ["assistant: " + results[i].Text, "sanitized: " + verdict.Solution], reason);
                progress?.Report(new EvaluationProgress(Name, Interlocked.Increment(ref done), problems.Count));
            }).ConfigureAwait(false);

        double n = Math.Max(1, problems.Count);
        double basePassAt1 = basePass.Count(b => b) / n;
        var metrics = new Dictionary<string, double> { ["mbpp_base_pass@1"] = basePassAt1 };
        if (options.RunPlus) metrics["mbpp_plus_pass@1"] = plusPass.Count(b => b) / n;
        return new EvaluationReport(Name, problems.Count == 0 ? 0 : basePassAt1, metrics, outcomes);
    }

    /// <summary>Outcome of one run (base or plus) as the harness reports it.</summary>
    public sealed record RunVerdict(string Status, int Passed, string Reason)
    {
        internal string Describe() => Status == "success" ? $"success ({Passed} inputs)" : $"{Status} ({Passed} inputs passed; {Reason})";
    }

    /// <summary>The sanitized solution and its base (and plus) verdicts.</summary>
    public sealed record CheckVerdict(string Solution, RunVerdict Base, RunVerdict? Plus);

    /// <summary>
    /// Sanitizes and judges one completion (the text after the ```python prefill) in two sandboxes:
    /// the runner executes the code and streams its outputs into a host file (bounded), then the
    /// judge, which the code under test never shares a process or a channel with, compares them
    /// with the expected outputs. Whatever the code does, the verdict is a failure unless its
    /// outputs are right; nothing it does ends the evaluation.
    /// </summary>
    public async Task<CheckVerdict> CheckAsync(MbppProblem p, string completion, GroundTruth truth, BubblewrapSandbox sandbox, CancellationToken ct)
    {
        if (!OperatingSystem.IsLinux()) throw new PlatformNotSupportedException("the MBPP+ sandbox needs Linux");
        var kinds = options.RunPlus ? new[] { "base", "plus" } : ["base"];
        var limits = new JsonObject();
        foreach (var k in kinds)
            limits[k] = new JsonArray(truth.TimeLimits(k, MinTimeLimit, TimeLimitFactor).Select(t => (JsonNode)t).ToArray());
        var runnerRequest = new JsonObject
        {
            ["task_id"] = p.TaskId,
            ["prompt"] = p.Prompt,
            ["completion"] = completion,
            ["sanitize"] = options.Sanitize,
            ["entry_point"] = p.EntryPoint,
            ["task_line"] = p.RawLine,
            ["kinds"] = new JsonArray(kinds.Select(k => (JsonNode)k).ToArray()),
            ["time_limits"] = limits,
            ["total_time_cap"] = options.TotalTimeCapSeconds,
        };
        // Each run may take Σ limits (or the cap) + 1 s plus 1 s for the join (as EvalPlus), and
        // the interpreter needs a moment to start, load the inputs and pickle the outputs.
        double runnerBudget = kinds.Sum(k => RunTimeout(truth.TimeLimitSum(k, MinTimeLimit, TimeLimitFactor), options.TotalTimeCapSeconds) + 1) + 10;
        long pickleBytes = new FileInfo(truth.PicklePath).Length;
        // Right outputs pickle to about the size of the expected ones; more is the code's failure.
        long streamLimit = MinOutputStreamBytes + 2 * pickleBytes;

        string dir = OwnedTempFolders.Create("cycleqd-mbpp-run-");
        try
        {
            // The sandboxes run as other uids: they must be able to read (not write) the stream.
            File.SetUnixFileMode(dir, (UnixFileMode)0b111_101_101);
            string streamPath = Path.Combine(dir, "outputs");
            SandboxResult run;
            var sink = new FileStream(streamPath, FileMode.CreateNew, FileAccess.Write, FileShare.Read, 1 << 16, FileOptions.Asynchronous);
            await using (sink.ConfigureAwait(false))
            {
                run = await sandbox.RunAsync(new SandboxRequest
                {
                    Command = ["python3", "-s", "/input/mbpp_runner.py"],
                    InputFiles = new Dictionary<string, string>
                    {
                        ["mbpp_harness.py"] = EmbeddedScripts.Read("mbpp_harness.py"),
                        ["mbpp_runner.py"] = EmbeddedScripts.Read("mbpp_runner.py"),
                    },
                    Stdin = runnerRequest.ToJsonString(),
                    Environment = new Dictionary<string, string> { ["PYTHONHASHSEED"] = HashSeed },
                    Limits = new SandboxLimits
                    {
                        WallClock = TimeSpan.FromSeconds(runnerBudget),
                        CpuSeconds = (int)Math.Ceiling(runnerBudget) + 5,
                        AddressSpaceBytes = 4L << 30,
                        FileSizeBytes = 64L << 20,
                        Processes = 16,
                    },
                }, sink, streamLimit, ct).ConfigureAwait(false);
            }
            File.SetUnixFileMode(streamPath, (UnixFileMode)0b110_100_100);
            long streamBytes = new FileInfo(streamPath).Length;

            var judgeRequest = new JsonObject
            {
                ["prompt"] = p.Prompt,
                ["completion"] = completion,
                ["sanitize"] = options.Sanitize,
                ["entry_point"] = p.EntryPoint,
                ["atol"] = p.Atol,
                ["kinds"] = new JsonArray(kinds.Select(k => (JsonNode)k).ToArray()),
                ["pickle_path"] = "/expected/expected.pkl",
                ["stream_path"] = "/outputs/stream",
                ["runner_timed_out"] = run.TimedOut,
                ["stream_note"] = run.OutputLimitExceeded ? $"the outputs exceeded their bound of {streamLimit} bytes" : null,
            };
            // Loading the expected outputs and the stream: allow 1 s per 10 MB (Mbpp/255's pickle is about 1 GB).
            double judgeBudget = 30 + (pickleBytes + streamBytes) / 10e6;
            JsonDocument? verdict;
            try
            {
                verdict = await RunHarnessAsync(sandbox, "mbpp_judge.py", judgeRequest, TimeSpan.FromSeconds(judgeBudget), ct,
                    readOnly: [(truth.PicklePath, "/expected/expected.pkl"), (streamPath, "/outputs/stream")],
                    addressSpace: (4L << 30) + 4 * (pickleBytes + streamBytes)).ConfigureAwait(false);
            }
            catch (InvalidOperationException e)
            {
                // The stream is the code's own output: a judge that cannot read it fails the sample.
                return Failed("", "failed", "the judge could not compare the outputs: " + e.Message);
            }
            if (verdict is null)
                return Failed("", "timed out", $"the judge did not finish within {judgeBudget:0} s");
            using (verdict)
            {
                var root = verdict.RootElement;
                RunVerdict Read(string kind)
                {
                    var v = root.GetProperty(kind);
                    return new RunVerdict(v.GetProperty("status").GetString()!, v.GetProperty("passed").GetInt32(), v.GetProperty("reason").GetString()!);
                }
                return new CheckVerdict(root.GetProperty("solution").GetString()!, Read("base"), options.RunPlus ? Read("plus") : null);
            }
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>The whole-run limit of one kind of inputs (seconds): Σ per-input limits, or the cap when smaller, + 1 s; the runner applies the same rule.</summary>
    public static double RunTimeout(double timeLimitSum, double? cap) => (cap is double c ? Math.Min(c, timeLimitSum) : timeLimitSum) + 1;

    private CheckVerdict Failed(string solution, string status, string reason) =>
        new(solution, new RunVerdict(status, 0, reason), options.RunPlus ? new RunVerdict(status, 0, reason) : null);

    /// <summary>Smallest bound on a runner's output stream (bytes), whatever the size of the expected outputs.</summary>
    private const long MinOutputStreamBytes = 64L << 20;

    /// <summary>The reference's sanitiser applied to <paramref name="code"/> (runs the embedded harness; no code is executed).</summary>
    public static async Task<string> SanitizeAsync(string code, string entryPoint, CancellationToken ct = default)
    {
        var req = new JsonObject { ["mode"] = "sanitize", ["code"] = code, ["entry_point"] = entryPoint };
        using var doc = await RunHarnessAsync(BubblewrapSandbox.Create(), req, TimeSpan.FromSeconds(30), ct).ConfigureAwait(false)
            ?? throw new InvalidOperationException("the sanitiser timed out");
        return doc.RootElement.GetProperty("solution").GetString()!;
    }

    private const string HashSeed = "0";

    private const string ResultMark = "@@cycleqd-mbpp-result@@";

    private static async Task<JsonDocument?> RunHarnessAsync(BubblewrapSandbox sandbox, JsonObject request, TimeSpan wall, CancellationToken ct,
        IReadOnlyList<(string, string)>? readOnly = null, IReadOnlyList<(string, string)>? writable = null) =>
        await RunHarnessAsync(sandbox, "mbpp_harness.py", request, wall, ct, readOnly, writable).ConfigureAwait(false);

    /// <summary>Runs one of the trusted scripts (harness or judge); null when it ran out of time.</summary>
    private static async Task<JsonDocument?> RunHarnessAsync(BubblewrapSandbox sandbox, string script, JsonObject request, TimeSpan wall, CancellationToken ct,
        IReadOnlyList<(string, string)>? readOnly = null, IReadOnlyList<(string, string)>? writable = null, long addressSpace = 4L << 30)
    {
        var inputs = new Dictionary<string, string> { ["mbpp_harness.py"] = EmbeddedScripts.Read("mbpp_harness.py") };
        inputs[script] = EmbeddedScripts.Read(script);
        var result = await sandbox.RunAsync(new SandboxRequest
        {
            Command = ["python3", "-s", "/input/" + script],
            ReadOnlyBinds = readOnly ?? [],
            WritableBinds = writable ?? [],
            InputFiles = inputs,
            Stdin = request.ToJsonString(),
            // Expected outputs and the code under test must see the same str hashes: EvalPlus gets
            // that by forking the checker from the process that computed them, so set-ordered
            // outputs (e.g. tuple(set(a) & set(b)), Mbpp/2) agree. A fixed seed also makes reruns identical.
            Environment = new Dictionary<string, string> { ["PYTHONHASHSEED"] = HashSeed },
            Limits = new SandboxLimits
            {
                WallClock = wall,
                CpuSeconds = (int)Math.Ceiling(wall.TotalSeconds) + 5,
                AddressSpaceBytes = addressSpace,
                // The expected-output pickle of Mbpp/255 is about 1 GB; only that run has a writable host folder.
                FileSizeBytes = writable is { Count: > 0 } ? 4L << 30 : 64L << 20,
                Processes = 16,
            },
        }, ct).ConfigureAwait(false);
        if (result.TimedOut) return null;
        int at = result.Stdout.LastIndexOf(ResultMark, StringComparison.Ordinal);
        if (at < 0 || result.OutputLimitExceeded)
            throw new InvalidOperationException($"the MBPP+ {Path.GetFileNameWithoutExtension(script)} failed (exit {result.ExitCode}{(result.OutputLimitExceeded ? ", output limit" : "")}): {Tail(result.Stderr)}");
        return JsonDocument.Parse(result.Stdout[(at + ResultMark.Length)..]);
    }

    private static string Tail(string s) => s.Length <= 2000 ? s : "…" + s[^2000..];

    /// <summary>Expected outputs (a pickle file, as Python objects keep their types) and reference run times of one task.</summary>
    public sealed record GroundTruth(string PicklePath, IReadOnlyDictionary<string, double[]> Times)
    {
        internal double[] TimeLimits(string kind, double min, double factor) => Times[kind].Select(t => Math.Max(min, factor * t)).ToArray();

        internal double TimeLimitSum(string kind, double min, double factor) => TimeLimits(kind, min, factor).Sum();
    }

    /// <summary>
    /// Computes (or reads from the cache) the expected outputs of each task by running prompt +
    /// canonical_solution; throws <see cref="InvalidOperationException"/> naming the first task whose run failed.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, GroundTruth>> EnsureGroundTruthAsync(IReadOnlyList<MbppProblem> problems, BubblewrapSandbox sandbox, CancellationToken ct)
    {
        var (truths, failures) = await ComputeGroundTruthAsync(problems, sandbox, ct).ConfigureAwait(false);
        foreach (var p in problems)
            if (failures.TryGetValue(p.TaskId, out var why))
                throw new InvalidOperationException($"{p.TaskId}: {why}");
        return truths;
    }

    /// <summary>The expected outputs of each task, and for the tasks whose canonical run failed, why.</summary>
    private async Task<(IReadOnlyDictionary<string, GroundTruth> Truths, IReadOnlyDictionary<string, string> Failures)> ComputeGroundTruthAsync(
        IReadOnlyList<MbppProblem> problems, BubblewrapSandbox sandbox, CancellationToken ct)
    {
        var failures = new ConcurrentDictionary<string, string>();
        string cacheDir = Path.Combine(options.CacheDir ?? DefaultCacheDir(), "mbpp-groundtruth", DatasetHash() + "-hashseed" + HashSeed + "-v3");
        Directory.CreateDirectory(cacheDir);
        if (OperatingSystem.IsLinux())
            for (var d = new DirectoryInfo(cacheDir); d != null && d.FullName.StartsWith(options.CacheDir ?? DefaultCacheDir(), StringComparison.Ordinal); d = d.Parent)
                File.SetUnixFileMode(d.FullName, (UnixFileMode)0b111_101_101);
        var truths = new ConcurrentDictionary<string, GroundTruth>();
        await Parallel.ForEachAsync(problems, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, options.Parallelism), CancellationToken = ct }, async (p, token) =>
        {
            string file = Path.Combine(cacheDir, p.TaskId.Replace('/', '_') + ".json");
            string pickle = Path.ChangeExtension(file, ".pkl");
            if (File.Exists(file) && File.Exists(pickle))
            {
                try
                {
                    truths[p.TaskId] = ParseTruth(await File.ReadAllTextAsync(file, token).ConfigureAwait(false), pickle);
                    return;
                }
                catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException) { }
            }
            // The sandbox runs as another uid: it writes the pickle into a folder of its own.
            string outDir = OwnedTempFolders.Create("cycleqd-mbpp-gt-");
            if (OperatingSystem.IsLinux()) File.SetUnixFileMode(outDir, (UnixFileMode)0b111_111_111);
            var req = new JsonObject
            {
                ["mode"] = "groundtruth",
                ["task_id"] = p.TaskId,
                ["code"] = p.Prompt + p.CanonicalSolution,
                ["entry_point"] = p.EntryPoint,
                ["task_line"] = p.RawLine,
                ["pickle_path"] = "/gt/expected.pkl",
            };
            string text;
            try
            {
                JsonDocument? result;
                try
                {
                    result = await RunHarnessAsync(sandbox, req, TimeSpan.FromSeconds(300), token, writable: [(outDir, "/gt")]).ConfigureAwait(false);
                }
                catch (InvalidOperationException e)
                {
                    failures[p.TaskId] = "computing the expected outputs failed: " + e.Message;
                    return;
                }
                if (result is null)
                {
                    failures[p.TaskId] = "the canonical solution did not finish within 300 s";
                    return;
                }
                using var doc = result;
                text = doc.RootElement.GetRawText();
                File.Move(Path.Combine(outDir, "expected.pkl"), pickle, overwrite: true);
            }
            finally
            {
                try { Directory.Delete(outDir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            }
            await File.WriteAllTextAsync(file + ".tmp", text, token).ConfigureAwait(false);
            File.Move(file + ".tmp", file, overwrite: true);
            truths[p.TaskId] = ParseTruth(text, pickle);
        }).ConfigureAwait(false);
        return (truths, failures);
    }

    private static GroundTruth ParseTruth(string json, string picklePath)
    {
        using var doc = JsonDocument.Parse(json);
        var times = new Dictionary<string, double[]>();
        foreach (var kind in new[] { "base", "plus" })
            times[kind] = doc.RootElement.GetProperty(kind + "_time").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        return new GroundTruth(picklePath, times);
    }

    private string DatasetHash()
    {
        using var s = File.OpenRead(DataFile);
        return Convert.ToHexStringLower(SHA256.HashData(s))[..16];
    }

    /// <summary>
    /// $XDG_CACHE_HOME/cycleqd, else /var/tmp/cycleqd-&lt;user&gt;: the sandbox's uid must be able to
    /// reach the cached pickles, and a root user's home (mode 0700) would hide them.
    /// </summary>
    private static string DefaultCacheDir()
    {
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrEmpty(xdg)) return Path.Combine(xdg, "cycleqd");
        return Path.Combine("/var/tmp", "cycleqd-" + Environment.UserName);
    }

    /// <summary>A responder that "generates" each task's canonical solution followed by a closing fence.</summary>
    public ScriptedResponder CreateGoldResponder()
    {
        var prompts = PromptLibrary.Load(Path.Combine(options.DataDir, "cycleqd_prompts.json"));
        var byPrompt = new Dictionary<string, MbppProblem>(StringComparer.Ordinal);
        foreach (var p in SelectedProblems()) byPrompt[PromptFor(p, prompts)] = p;
        return new ScriptedResponder(req => byPrompt.TryGetValue(req.Prompt, out var p)
            ? p.CanonicalSolution + "```\n"
            : throw new InvalidOperationException("the gold responder got a prompt that is not an MBPP+ task"));
    }
}
