using System.Globalization;
using System.Text.RegularExpressions;
using CycleQD.Core.Evaluation;
using CycleQD.Tasks.Prompts;
using CycleQD.Tasks.Python;
using CycleQD.Tasks.Sandbox;
using CycleQD.Tasks.Scripted;

namespace CycleQD.Tasks.AgentBenchOs;

/// <summary>Settings of an AgentBench OS evaluation.</summary>
public sealed record AgentBenchOsOptions
{
    /// <summary>The shared data folder (holds agentbench_os/).</summary>
    public required string DataDir { get; init; }

    /// <summary>Sample ids; null = the 110 of task_ids.json.</summary>
    public IReadOnlyList<int>? Ids { get; init; }

    /// <summary>Run only the first N ids.</summary>
    public int? Limit { get; init; }

    /// <summary>Model turns per episode (reference max_round = 5).</summary>
    public int MaxRound { get; init; } = 5;

    /// <summary>Samples run together (reference: chunks of 32 containers); all prompts of a chunk's round form one batch.</summary>
    public int ChunkSize { get; init; } = 32;

    /// <summary>
    /// Repeated evaluations averaged into the score (reference: 5, because init scripts draw
    /// $RANDOM). Every repetition starts fresh sandboxes.
    /// </summary>
    public int Repeats { get; init; } = 5;

    /// <summary>How long one shell turn may take before the episode ends with an empty answer (reference: 5 s).</summary>
    public TimeSpan TurnTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Most time one shell turn may take in all, even while the shell keeps printing (the
    /// <see cref="TurnTimeout"/> counts silence); past it the episode ends as for a timeout.
    /// </summary>
    public TimeSpan TurnLimit { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>Most new tokens per turn (reference: 512).</summary>
    public int MaxNewTokens { get; init; } = 512;

    /// <summary>Context limit in tokens, as the reference's vLLM max_model_len (null = none).</summary>
    public int? MaxModelLen { get; init; } = ReferenceSampling.MaxModelLen;

    /// <summary>Cache folder holding the pinned root file system; null = <see cref="OsRootFilesystem.DefaultCacheDir"/>.</summary>
    public string? CacheDir { get; init; }
}

/// <summary>
/// AgentBench OS as CycleQD evaluates it (fishfarm tasks/os_interaction.py; data README §2), with a
/// bubblewrap sandbox on a pinned root file system standing in for each sample's Ubuntu container.
/// Score = accuracy averaged over <see cref="AgentBenchOsOptions.Repeats"/> runs; scores compare
/// only under the same <see cref="EnvironmentFingerprint"/>.
/// </summary>
public sealed class AgentBenchOsBenchmark(AgentBenchOsOptions options) : IBenchmark, IPinnedEnvironment
{
    private static readonly Regex ActPattern = new(@"Act:\s*(.+)", RegexOptions.CultureInvariant);
    private static readonly Regex BashBlockPattern = new(@"```bash\n(.*?)\n```", RegexOptions.CultureInvariant | RegexOptions.Singleline);
    private const int MaxOutputChars = 800;

    private IReadOnlyList<OsSample>? _samples;
    private OsRootFilesystem? _rootfs;

    /// <inheritdoc/>
    public string Name => "agentbench_os";

    /// <inheritdoc/>
    public string EnvironmentName => "AgentBench OS root file system";

    /// <inheritdoc/>
    public string EnvironmentFingerprint => RootFilesystem.Hash;

    /// <summary>The root file system the samples run on; throws <see cref="SandboxUnavailableException"/> saying how to build it when it is missing.</summary>
    public OsRootFilesystem RootFilesystem => _rootfs ??= OsRootFilesystem.Load(options.CacheDir);

    private string Dir => Path.Combine(options.DataDir, "agentbench_os");

    /// <summary>The samples this evaluation runs, in id order.</summary>
    public IReadOnlyList<OsSample> SelectedSamples()
    {
        var all = _samples ??= OsSample.Load(Path.Combine(Dir, "samples.json"));
        var ids = options.Ids ?? OsSample.LoadTaskIds(Path.Combine(Dir, "task_ids.json"));
        if (options.Limit is int n) ids = ids.Take(n).ToList();
        foreach (int id in ids)
            if (id < 0 || id >= all.Count) throw new ArgumentException($"AgentBench OS sample id {id} is out of range (the data has {all.Count} samples)");
        return ids.Select(i => all[i]).ToList();
    }

    /// <summary>The action of one reply (extract_action): scans the "Act:" lines from the last; null when none is recognised.</summary>
    public static (string Kind, string? Content)? ParseAction(string reply)
    {
        var acts = ActPattern.Matches(reply).Select(m => m.Groups[1].Value).Reverse();
        foreach (var act in acts)
        {
            string lower = act.ToLowerInvariant();
            if (lower.StartsWith("bash", StringComparison.Ordinal))
                return ("bash", string.Join("\n\n", BashBlockPattern.Matches(reply).Select(m => m.Groups[1].Value)));
            if (lower.StartsWith("finish", StringComparison.Ordinal))
                return ("finish", null);
            if (lower.StartsWith("answer", StringComparison.Ordinal))
            {
                string content = PythonStrings.Strip(act[6..]);
                int l = content.IndexOf('('), r = content.LastIndexOf(')');
                if (l < 0 || r < 0) continue;
                return ("answer", r > l ? content[(l + 1)..r] : "");
            }
        }
        return null;
    }

    private sealed class Episode(OsSample sample)
    {
        public OsSample Sample { get; } = sample;
        public List<ChatMessage> Messages { get; } = [.. sample.Problem];
        public OsEnvironment? Env { get; set; }
        public bool Finished { get; set; }
        /// <summary>The answer: text, or null for "finish" (judged as Python's None).</summary>
        public string? Answer { get; set; } = "";
        public string Note { get; set; } = "";
        /// <summary>Why the sample's environment stopped working (it then fails); null while it works.</summary>
        public string? Failure { get; set; }
    }

    /// <inheritdoc/>
    public async Task<EvaluationReport> EvaluateAsync(ITextGenerator generator, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var samples = SelectedSamples();
        var rootfs = RootFilesystem;
        var sandbox = BubblewrapSandbox.Create();
        int repeats = Math.Max(1, options.Repeats);
        var correctCounts = new int[samples.Count];
        var lastOutcome = new SampleOutcome[samples.Count];
        var accuracies = new List<double>();
        int done = 0, total = samples.Count * repeats;
        for (int rep = 0; rep < repeats; rep++)
        {
            int passed = 0;
            for (int c0 = 0; c0 < samples.Count; c0 += options.ChunkSize)
            {
                var chunk = samples.Skip(c0).Take(options.ChunkSize).Select(s => new Episode(s)).ToList();
                try
                {
                    await Task.WhenAll(chunk.Select(e => SetUpAsync(e, sandbox, rootfs, cancellationToken))).ConfigureAwait(false);
                    await RunRoundsAsync(chunk, generator, cancellationToken).ConfigureAwait(false);
                    var verdicts = await Task.WhenAll(chunk.Select(e => JudgeAsync(e, cancellationToken))).ConfigureAwait(false);
                    for (int k = 0; k < chunk.Count; k++)
                    {
                        var e = chunk[k];
                        var (ok, why) = verdicts[k];
                        int i = c0 + k;
                        if (ok) { correctCounts[i]++; passed++; }
                        string reason = (repeats > 1 ? $"passed {correctCounts[i]}/{rep + 1} runs; last: " : "") + why + (e.Note.Length > 0 ? $" ({e.Note})" : "");
                        lastOutcome[i] = new SampleOutcome(e.Sample.Index.ToString(CultureInfo.InvariantCulture), correctCounts[i] * 2 > rep + 1 || (rep == 0 && ok),
                            ChatTemplates.Llama3(e.Sample.Problem), e.Messages.Skip(e.Sample.Problem.Count).Select(m => $"{m.Role}: {m.Content}").ToList(), reason);
                        progress?.Report(new EvaluationProgress(Name, ++done, total));
                    }
                }
                finally
                {
                    foreach (var e in chunk)
                        if (e.Env != null) await e.Env.DisposeAsync().ConfigureAwait(false);
                }
            }
            accuracies.Add(samples.Count == 0 ? 0 : (double)passed / samples.Count);
        }
        double score = accuracies.Average();
        var metrics = new Dictionary<string, double> { ["acc"] = score };
        for (int r = 0; r < accuracies.Count; r++) metrics[$"acc_run{r + 1}"] = accuracies[r];
        // A sample counts as correct in the details when it passed in most runs.
        var outcomes = lastOutcome.Select((o, i) => o with { Correct = correctCounts[i] * 2 > repeats }).ToList();
        return new EvaluationReport(Name, score, metrics, outcomes);
    }

    private async Task SetUpAsync(Episode e, BubblewrapSandbox sandbox, OsRootFilesystem rootfs, CancellationToken ct)
    {
        // Wall clock for the whole episode: setup, every turn, the checks.
        e.Env = OsEnvironment.Start(sandbox, rootfs, TimeSpan.FromMinutes(10));
        try
        {
            // As the reference's container: the agent's login shell starts (and has read its startup
            // files) before the init scripts run, so an init that rewrites ~/.bashrc (samples 11, 28)
            // does not change the prompt the shell already has.
            await e.Env.StartSessionAsync(ct).ConfigureAwait(false);
            foreach (var script in e.Sample.InitScripts)
                await e.Env.ExecAsync(script, [], ct).ConfigureAwait(false); // output ignored, as the reference
            if (e.Sample.Start is { } start)
                await e.Env.SendAsync(start.Script, options.TurnTimeout, options.TurnLimit, ct).ConfigureAwait(false);
        }
        catch (OsEnvironmentException x)
        {
            Fail(e, "setting up the environment failed: " + x.Message);
        }
    }

    /// <summary>Ends the episode: whatever happens in one sample's sandbox is that sample's failure, not the evaluation's.</summary>
    private static void Fail(Episode e, string reason)
    {
        e.Finished = true;
        e.Answer = "";
        e.Failure ??= reason;
    }

    private async Task RunRoundsAsync(List<Episode> chunk, ITextGenerator generator, CancellationToken ct)
    {
        var open = chunk.Where(e => !e.Finished).ToList();
        for (int round = 0; round < options.MaxRound && open.Count > 0; round++)
        {
            var requests = open.Select(e => new GenerationRequest(ChatTemplates.Llama3(e.Messages), options.MaxNewTokens, AddBos: null, MaxModelLen: options.MaxModelLen)).ToList();
            var results = await generator.GenerateAsync(requests, ct).ConfigureAwait(false);
            if (results.Count != requests.Count)
                throw new InvalidOperationException($"the generator returned {results.Count} results for {requests.Count} requests");
            await Task.WhenAll(open.Select((e, i) => StepAsync(e, results[i].Text, ct))).ConfigureAwait(false);
            open = open.Where(e => !e.Finished).ToList();
        }
        // Episodes still open after the last turn are judged with answer "".
    }

    private async Task StepAsync(Episode e, string reply, CancellationToken ct)
    {
        e.Messages.Add(new ChatMessage("assistant", reply));
        var action = ParseAction(reply);
        if (action is null)
        {
            e.Finished = true;
            e.Answer = "";
            e.Note = "no recognised action";
            return;
        }
        var (kind, content) = action.Value;
        if (kind != "bash")
        {
            e.Finished = true;
            e.Answer = kind == "finish" ? null : content;
            return;
        }
        string output;
        bool timedOut;
        try
        {
            (output, timedOut) = await e.Env!.SendAsync(content ?? "", options.TurnTimeout, options.TurnLimit, ct).ConfigureAwait(false);
        }
        catch (OsEnvironmentException x)
        {
            Fail(e, "the environment stopped working during a turn: " + x.Message);
            return;
        }
        if (timedOut)
        {
            // The reference waits 5 s for the turn and then ends the episode with an empty answer.
            e.Finished = true;
            e.Answer = "";
            e.Note = $"the shell did not return to its prompt within {options.TurnTimeout.TotalSeconds:0.#} s of silence or {options.TurnLimit.TotalSeconds:0.#} s in all";
            return;
        }
        if (PythonStrings.Length(output) > MaxOutputChars)
            output = PythonStrings.Prefix(output, 780) + "\n[truncated because the output is too long]";
        e.Messages.Add(new ChatMessage("user", output.Length > 0 ? "The output of the OS:\n\n" + output : "The output of the OS is empty."));
    }

    private static async Task<(bool Ok, string Why)> JudgeAsync(Episode e, CancellationToken ct)
    {
        if (e.Failure is { } failure) return (false, failure);
        try
        {
            return await JudgeAnswerAsync(e, ct).ConfigureAwait(false);
        }
        catch (OsEnvironmentException x)
        {
            return (false, "the environment stopped working during the checks: " + x.Message);
        }
    }

    private static async Task<(bool Ok, string Why)> JudgeAnswerAsync(Episode e, CancellationToken ct)
    {
        var s = e.Sample;
        string? answer = e.Answer;
        if (s.MatchAnswer is { } expected)
        {
            if (answer is not null && s.MatchStrip) answer = PythonStrings.Strip(answer);
            bool ok = answer == expected;
            return (ok, ok ? $"answer {PythonRepr.Str(expected)} matches" : $"answer {(answer is null ? "None" : PythonRepr.Str(answer))} != {PythonRepr.Str(expected)}");
        }
        if (s.Check is { } checks)
        {
            var parameters = new List<string> { answer ?? "None" };
            for (int k = 0; k < checks.Count; k++)
            {
                var script = checks[k] ?? s.ExampleScript;
                if (script is null) return (false, $"check {k} refers to a missing example script");
                var (code, output) = await e.Env!.ExecAsync(script, parameters, ct).ConfigureAwait(false);
                if (code != 0)
                    return (false, $"check {k} exited {code} (answer {PythonRepr.Str(parameters[0])}{string.Concat(parameters.Skip(1).Select((p, j) => $", check {j} printed {PythonRepr.Str(Short(p))}"))}): {Short(output)}");
                parameters.Add(output);
            }
            return (true, $"all {checks.Count} checks passed (answer {PythonRepr.Str(parameters[0])})");
        }
        return (false, "invalid evaluation type in config");
    }

    private static string Short(string s) => s.Length <= 200 ? s.Trim() : s[..200].Trim() + "…";

    /// <summary>
    /// A responder that runs each sample's example script (turn 1), then answers with the last
    /// line of its output (turn 2); samples with no example script answer their match answer. The
    /// script runs as the check runs it (a fresh <c>bash -c</c> from / with the exec environment,
    /// output through a pipe), not in the login shell itself, whose state (a twice-sourced
    /// ~/.bashrc, a changed directory) the check never sees. It is sent as one line
    /// (<c>env -i -C / … bash -c "$(echo BASE64 | base64 -d)" 2>&amp;1 | cat</c>) so that the shell
    /// prints one prompt after all of it, as a multi-line command would not.
    /// </summary>
    public ScriptedResponder CreateGoldResponder()
    {
        var byOpening = new Dictionary<string, OsSample>(StringComparer.Ordinal);
        foreach (var s in SelectedSamples()) byOpening[OpeningKey(ChatTemplates.Llama3(s.Problem), s.Problem.Count)] = s;
        const string userHeader = "<|start_header_id|>user<|end_header_id|>\n\n";
        return new ScriptedResponder(req =>
        {
            string key = OpeningKey(req.Prompt, 7);
            if (!byOpening.TryGetValue(key, out var s))
                throw new InvalidOperationException("the gold responder got a prompt that is not an AgentBench OS sample");
            string tail = req.Prompt[key.Length..];
            if (s.ExampleScript is null)
                return $"Think: I know the answer.\n\nAct: answer({s.MatchAnswer})";
            if (!tail.Contains(userHeader, StringComparison.Ordinal))
            {
                string b64 = Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(s.ExampleScript.Script));
                string env = string.Join(' ', OsEnvironment.ExecEnvironment.Select(kv => $"{kv.Key}='{kv.Value}'"));
                // env -C, not a subshell: a subshell would be one more bash for `ps` to count (57).
                return $"Think: run the reference solution.\n\nAct: bash\n\n```bash\nenv -i -C / {env} bash -c \"$(echo {b64} | base64 -d)\" 2>&1 | cat\n```";
            }
            // The last user message holds the shell's output followed by its prompt.
            string msg = tail[(tail.LastIndexOf(userHeader, StringComparison.Ordinal) + userHeader.Length)..];
            msg = msg[..msg.IndexOf("<|eot_id|>", StringComparison.Ordinal)];
            msg = msg.StartsWith("The output of the OS:", StringComparison.Ordinal) ? msg["The output of the OS:".Length..] : "";
            msg = Regex.Replace(msg, @"\x1b\]0;[^\x07]*\x07|\x1b\[[0-9;?]*[A-Za-z]", "");
            var lines = msg.Replace("\r", "", StringComparison.Ordinal).Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !Regex.IsMatch(l, @"^\S+@\S+:.*[#$]$")).ToList();
            return $"Think: the output is the answer.\n\nAct: answer({(lines.Count > 0 ? lines[^1] : "")})";
        });
    }

    /// <summary>The rendered prompt up to and including the end of the sample's opening messages.</summary>
    private static string OpeningKey(string rendered, int messages)
    {
        int at = -1;
        for (int k = 0; k < messages; k++)
        {
            at = rendered.IndexOf("<|eot_id|>", at + 1, StringComparison.Ordinal);
            if (at < 0) return rendered;
        }
        return rendered[..(at + "<|eot_id|>".Length)];
    }
}
