using System.Text.Json;
using System.Text.RegularExpressions;
using CycleQD.Core.Evaluation;
using CycleQD.Tasks.Database;
using CycleQD.Tasks.Prompts;
using CycleQD.Tasks.Python;
using CycleQD.Tasks.Sandbox;
using CycleQD.Tasks.Scripted;

namespace CycleQD.Tasks.AgentBenchDb;

/// <summary>Settings of an AgentBench DB evaluation.</summary>
public sealed record AgentBenchDbOptions
{
    /// <summary>The shared data folder (holds agentbench_db/ and cycleqd_prompts.json).</summary>
    public required string DataDir { get; init; }

    /// <summary>Table layout on the server.</summary>
    public DbLayout Layout { get; init; } = DbLayout.Isolated;

    /// <summary>An existing server (MySqlConnector connection string); null starts a private MariaDB.</summary>
    public string? ConnectionString { get; init; }

    /// <summary>Sample ids to run; null = the 341 of task_ids.json.</summary>
    public IReadOnlyList<int>? Ids { get; init; }

    /// <summary>Run only the first N ids.</summary>
    public int? Limit { get; init; }

    /// <summary>Last round index (rounds 0..MaxRound; an Operation in round MaxRound ends the episode).</summary>
    public int MaxRound { get; init; } = 5;

    /// <summary>Most new tokens per model turn (reference: 512).</summary>
    public int MaxNewTokens { get; init; } = 512;

    /// <summary>Context limit in tokens, as the reference's vLLM max_model_len (null = none).</summary>
    public int? MaxModelLen { get; init; } = ReferenceSampling.MaxModelLen;

    /// <summary>Called with the private server once it runs (tests use it to stop the server mid-evaluation).</summary>
    internal Action<MariaDbServer>? OnServerStarted { get; init; }
}

/// <summary>
/// AgentBench DB as CycleQD evaluates it (fishfarm tasks/dbbench.py; data README §1): tables built
/// all-TEXT up front, lock-step rounds with every unfinished sample's prompt in one batch, SQL run on
/// a real MariaDB, query answers judged with Python's eval/float/set semantics in the sandbox,
/// INSERT/UPDATE judged by the table hash. Score = overall_cat_accuracy (= plain accuracy).
/// </summary>
public sealed class AgentBenchDbBenchmark(AgentBenchDbOptions options) : IBenchmark
{
    private static readonly Regex ActionPattern = new(@"Action: (.*?)\n", RegexOptions.CultureInvariant);
    private static readonly Regex SqlBlockPattern = new(@"```sql\n([\s\S]*?)\n```", RegexOptions.CultureInvariant);
    private static readonly Regex FinalAnswerPattern = new(@"\nFinal Answer:(.*)", RegexOptions.CultureInvariant);

    private IReadOnlyList<DbBenchRecord>? _records;
    private PromptLibrary? _prompts;

    /// <inheritdoc/>
    public string Name => "agentbench_db";

    private string DbDir => Path.Combine(options.DataDir, "agentbench_db");

    private IReadOnlyList<DbBenchRecord> Records => _records ??= DbBenchRecord.Load(Path.Combine(DbDir, "data_dbbench_standard_dev.jsonl"));

    private PromptLibrary Prompts => _prompts ??= PromptLibrary.Load(Path.Combine(options.DataDir, "cycleqd_prompts.json"));

    /// <summary>The records this evaluation runs, in id order.</summary>
    public IReadOnlyList<DbBenchRecord> SelectedRecords()
    {
        var ids = options.Ids ?? DbBenchRecord.LoadTaskIds(Path.Combine(DbDir, "task_ids.json"));
        if (options.Limit is int n) ids = ids.Take(n).ToList();
        foreach (int id in ids)
            if (id < 0 || id >= Records.Count)
                throw new ArgumentException($"AgentBench DB sample id {id} is out of range (the data has {Records.Count} records)");
        return ids.Select(i => Records[i]).ToList();
    }

    /// <summary>The opening messages (data README §1): DB prompt, "Ok.", description + "\n" + add_description.</summary>
    public IReadOnlyList<ChatMessage> OpeningMessages(DbBenchRecord r) =>
    [
        new("user", Prompts["agentbench_db.prompt_template"]),
        new("assistant", "Ok."),
        new("user", r.Description + "\n" + r.AddDescription),
    ];

    private string DatabaseFor(DbBenchRecord r) => options.Layout == DbLayout.Reference ? r.TableName : $"cycleqd_s{r.Index}";

    private sealed class Episode(DbBenchRecord record, List<ChatMessage> messages)
    {
        public DbBenchRecord Record { get; } = record;
        public List<ChatMessage> Messages { get; } = messages;
        public string? Answer { get; set; }
        public int Rounds { get; set; }
    }

    /// <inheritdoc/>
    public async Task<EvaluationReport> EvaluateAsync(ITextGenerator generator, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var records = SelectedRecords();
        MariaDbServer? server = null;
        DbSampleAccounts? accounts = null;
        try
        {
            if (options.ConnectionString is null)
            {
                server = await MariaDbServer.StartAsync(cancellationToken).ConfigureAwait(false);
                options.OnServerStarted?.Invoke(server);
            }
            string adminCs = options.ConnectionString ?? server!.ConnectionString;
            string serverName = server?.Description ?? DescribeServer(adminCs);
            Func<CancellationToken, Task> ensureServerAlive = ct => EnsureServerAliveAsync(server, adminCs, serverName, ct);
            var admin = new DbSession(adminCs, ensureServerAlive);
            accounts = new DbSampleAccounts(admin, server != null ? "localhost" : "%", ensureServerAlive, serverName);

            // Every table is created before any generation (dbbench.py evaluate); in the isolated
            // layout each sample has its own database, dropped first in case a server is reused.
            // The evaluator's account builds the tables; everything the model writes, and the
            // table hash (which reads objects the model may have replaced, e.g. by a view calling
            // an SQL SECURITY INVOKER function), runs as the sample's own account.
            var sampleSessions = new Dictionary<int, DbSession>();
            foreach (var r in records)
            {
                if (options.Layout == DbLayout.Isolated)
                    await admin.ExecuteAsync($"DROP DATABASE IF EXISTS `{DatabaseFor(r)}`", null, true, cancellationToken).ConfigureAwait(false);
                await admin.ExecuteAsync(DbBenchSql.BuildInit(r, DatabaseFor(r)), null, true, cancellationToken).ConfigureAwait(false);
            }
            foreach (var r in records)
                sampleSessions[r.Index] = await accounts.CreateAsync(r.Index, DatabaseFor(r), cancellationToken).ConfigureAwait(false);

            var episodes = records.Select(r => new Episode(r, [.. OpeningMessages(r)])).ToList();
            var finished = new List<Episode>();
            var unfinished = episodes;
            for (int round = 0; unfinished.Count > 0 && round <= options.MaxRound; round++)
            {
                var requests = unfinished.Select(e => new GenerationRequest(ChatTemplates.Llama3(e.Messages), options.MaxNewTokens, AddBos: null, MaxModelLen: options.MaxModelLen)).ToList();
                var results = await generator.GenerateAsync(requests, cancellationToken).ConfigureAwait(false);
                if (results.Count != requests.Count)
                    throw new InvalidOperationException($"the generator returned {results.Count} results for {requests.Count} requests");
                var next = new List<Episode>();
                for (int i = 0; i < unfinished.Count; i++)
                {
                    var e = unfinished[i];
                    string response = results[i].Text;
                    e.Messages.Add(new ChatMessage("assistant", response));
                    e.Rounds = round + 1;
                    if (await StepAsync(e, response, round, admin, sampleSessions[e.Record.Index], cancellationToken).ConfigureAwait(false))
                    {
                        await accounts.DropAsync(e.Record.Index, cancellationToken).ConfigureAwait(false);
                        finished.Add(e);
                        progress?.Report(new EvaluationProgress(Name, finished.Count, episodes.Count));
                    }
                    else next.Add(e);
                }
                unfinished = next;
            }
            // Episodes still open after the last round are not judged by the reference (they never
            // reach result_entries) but count in no bucket; here they are failures with a reason.
            var queryVerdicts = await JudgeQueriesAsync(finished.Where(e => !e.Record.IsModification).ToList(), cancellationToken).ConfigureAwait(false);

            var samples = new List<SampleOutcome>();
            int correct = 0;
            var perType = new Dictionary<string, (int Correct, int Total)>();
            foreach (var e in episodes)
            {
                bool ok;
                string reason;
                if (e.Answer is null)
                {
                    ok = false;
                    reason = "episode did not finish within the round limit";
                }
                else if (e.Record.IsModification)
                {
                    ok = e.Answer == e.Record.AnswerMd5;
                    reason = ok ? "table hash matches" : $"table hash mismatch: got {e.Answer}, expected {e.Record.AnswerMd5}";
                }
                else
                {
                    var (qok, parsed) = queryVerdicts[e];
                    ok = qok;
                    reason = ok ? $"answer {parsed} matches" : $"answer mismatch: got {parsed} (raw {PythonRepr.Str(e.Answer)}), expected {PythonRepr.Str(JsonSerializer.Serialize(e.Record.Label))}";
                }
                if (ok) correct++;
                string bucket = e.Record.Type;
                var t = perType.GetValueOrDefault(bucket);
                perType[bucket] = (t.Correct + (ok ? 1 : 0), t.Total + 1);
                samples.Add(new SampleOutcome(e.Record.Index.ToString(System.Globalization.CultureInfo.InvariantCulture), ok,
                    ChatTemplates.Llama3(OpeningMessages(e.Record)),
                    e.Messages.Skip(3).Select(m => $"{m.Role}: {m.Content}").ToList(), reason));
            }
            var metrics = new Dictionary<string, double>();
            foreach (var (type, (c, n)) in perType.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                metrics[type + "_accuracy"] = (double)c / n;
            var selects = episodes.Where(e => !(e.Record.Type is "INSERT" or "UPDATE")).ToList();
            if (selects.Count > 0) metrics["SELECT_accuracy"] = (double)selects.Count(e => samples[episodes.IndexOf(e)].Correct) / selects.Count;
            metrics["average_round"] = episodes.Count == 0 ? 0 : episodes.Average(e => (double)(e.Messages.Count));
            double score = episodes.Count == 0 ? 0 : (double)correct / episodes.Count;
            metrics["overall_cat_accuracy"] = score;
            return new EvaluationReport(Name, score, metrics, samples);
        }
        finally
        {
            // A reused server keeps no accounts; the private one is thrown away whole.
            if (accounts != null && server is null)
                try { await accounts.DropAllAsync(CancellationToken.None).ConfigureAwait(false); }
                catch (Exception e) when (e is MySqlConnector.MySqlException or DatabaseUnavailableException or InvalidOperationException or IOException) { }
            if (server != null) await server.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Called after any failed statement: a server that has exited, or that refuses the evaluator's
    /// own connection, ends the evaluation (every later sample would otherwise score 0 silently).
    /// </summary>
    private static async Task EnsureServerAliveAsync(MariaDbServer? server, string adminCs, string serverName, CancellationToken ct)
    {
        server?.EnsureRunning();
        try
        {
            await DbSession.PingAsync(adminCs, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is MySqlConnector.MySqlException or InvalidOperationException or IOException or System.Net.Sockets.SocketException)
        {
            server?.EnsureRunning();
            throw new DatabaseUnavailableException($"{serverName} no longer answers the evaluator's own connection ({e.Message}); every later statement would fail, so the evaluation stops");
        }
    }

    /// <summary>A reused server as error messages name it (never the password).</summary>
    private static string DescribeServer(string connectionString)
    {
        var b = new MySqlConnector.MySqlConnectionStringBuilder(connectionString);
        return b.ConnectionProtocol == MySqlConnector.MySqlConnectionProtocol.UnixSocket || b.Server.StartsWith('/')
            ? $"the database server at socket {b.Server}"
            : $"the database server at {b.Server}:{b.Port}";
    }

    /// <summary>One reply (dbbench.py process_response_and_check_completion); true when the episode ends.</summary>
    private async Task<bool> StepAsync(Episode e, string response, int round, DbSession admin, DbSession sample, CancellationToken ct)
    {
        var r = e.Record;
        string db = DatabaseFor(r);
        var action = ActionPattern.Match(response);
        if (action.Success && action.Groups[1].Value == "Operation" && round < options.MaxRound)
        {
            var block = SqlBlockPattern.Match(response);
            if (block.Success)
            {
                string sql = PythonStrings.Strip(block.Groups[1].Value).Replace("\n", " ", StringComparison.Ordinal);
                string result = await sample.ExecuteAsync(sql, db, true, ct).ConfigureAwait(false);
                e.Messages.Add(new ChatMessage("user", result));
                return false;
            }
        }
        string answer = "";
        if (response.Length > 0)
        {
            var m = FinalAnswerPattern.Match(response);
            if (m.Success) answer = m.Groups[1].Value;
        }
        if (r.IsModification)
            answer = await sample.ExecuteAsync(DbBenchSql.TableHash(r), db, true, ct).ConfigureAwait(false);
        await admin.ExecuteAsync($"drop database `{db}`", null, true, ct).ConfigureAwait(false);
        e.Answer = answer;
        return true;
    }

    private static async Task<Dictionary<Episode, (bool Ok, string Parsed)>> JudgeQueriesAsync(List<Episode> queries, CancellationToken ct)
    {
        var verdicts = new Dictionary<Episode, (bool, string)>();
        if (queries.Count == 0) return verdicts;
        string input = JsonSerializer.Serialize(queries.Select(e => new { answer = e.Answer, label = e.Record.Label }));
        var result = await BubblewrapSandbox.Create().RunAsync(new SandboxRequest
        {
            Command = ["python3", "-I", "/input/judge.py"],
            InputFiles = new Dictionary<string, string> { ["judge.py"] = EmbeddedScripts.Read("dbbench_judge.py") },
            Stdin = input,
            Limits = new SandboxLimits { WallClock = TimeSpan.FromSeconds(30 + 3 * queries.Count), CpuSeconds = 30 + 3 * queries.Count, AddressSpaceBytes = 2L << 30, OutputBytes = 16 << 20 },
        }, ct).ConfigureAwait(false);
        if (!result.Succeeded)
            throw new InvalidOperationException($"the AgentBench DB answer judge failed (exit {result.ExitCode}{(result.TimedOut ? ", timed out" : "")}): {result.Stderr}");
        using var doc = JsonDocument.Parse(result.Stdout);
        int i = 0;
        foreach (var v in doc.RootElement.EnumerateArray())
            verdicts[queries[i++]] = (v.GetProperty("correct").GetBoolean(), v.GetProperty("parsed").GetString()!);
        return verdicts;
    }

    /// <summary>
    /// A responder that answers from the data: for a modification record it runs the gold SQL
    /// (the record's label) in round 0 and then answers; for a query record it answers with the
    /// gold label at once, written as a Python list literal.
    /// </summary>
    public ScriptedResponder CreateGoldResponder()
    {
        var byOpening = new Dictionary<string, DbBenchRecord>(StringComparer.Ordinal);
        foreach (var r in SelectedRecords())
            byOpening[OpeningKey(ChatTemplates.Llama3(OpeningMessages(r)))] = r;
        return new ScriptedResponder(req =>
        {
            string key = OpeningKey(req.Prompt);
            if (!byOpening.TryGetValue(key, out var r))
                throw new InvalidOperationException("the gold responder got a prompt that is not an AgentBench DB sample");
            int turns = CountOf(req.Prompt, "<|start_header_id|>assistant<|end_header_id|>") - 2; // "Ok." and the open header
            if (r.IsModification && turns == 0)
                return "Action: Operation\n```sql\n" + r.Label[0] + "\n```";
            return "Action: Answer\nFinal Answer: " + (r.IsModification ? "[]" : "[" + string.Join(", ", r.Label.Select(PythonRepr.Str)) + "]");
        });
    }

    /// <summary>The rendered prompt up to the end of the third message (identifies the sample).</summary>
    private static string OpeningKey(string prompt)
    {
        int at = -1;
        for (int k = 0; k < 3; k++)
        {
            at = prompt.IndexOf("<|eot_id|>", at + 1, StringComparison.Ordinal);
            if (at < 0) return prompt;
        }
        return prompt[..at];
    }

    private static int CountOf(string s, string what)
    {
        int n = 0;
        for (int i = s.IndexOf(what, StringComparison.Ordinal); i >= 0; i = s.IndexOf(what, i + what.Length, StringComparison.Ordinal)) n++;
        return n;
    }
}
