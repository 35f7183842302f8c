using System.Text.Json;
using CycleQD.Core.Evaluation;
using CycleQD.Tasks.Python;
using CycleQD.Tasks.Scripted;

namespace CycleQD.Tasks.TinySkills;

/// <summary>One TinySkills example (tasks/&lt;skill&gt;/&lt;split&gt;.jsonl).</summary>
public sealed record TinySkillsExample(string Id, string Prompt, string Answer);

/// <summary>Settings of a TinySkills evaluation.</summary>
public sealed record TinySkillsOptions
{
    /// <summary>The tinyskills folder (holds tasks/&lt;skill&gt;/&lt;split&gt;.jsonl), e.g. shared/data/models/tinyskills.</summary>
    public required string TinySkillsDir { get; init; }

    /// <summary>code, db or os, or generic (the instruct base's own tasks, see <see cref="TinySkillsBenchmark.Generic"/>).</summary>
    public required string Skill { get; init; }

    /// <summary>test or valid (or train).</summary>
    public string Split { get; init; } = "test";

    /// <summary>Run only the first N examples.</summary>
    public int? Limit { get; init; }
}

/// <summary>
/// TinySkills exact-match accuracy (tinyskills/README.md "Evaluation protocol"): BOS + the prompt,
/// greedy, at most 8 new tokens, stop at EOS or at a newline; prediction = the continuation cut at
/// the first "\n" and stripped; correct iff it equals the answer. All prompts go in one batch.
/// </summary>
public sealed class TinySkillsBenchmark(TinySkillsOptions options) : IBenchmark
{
    /// <summary>Most new tokens per prompt.</summary>
    public const int MaxNewTokens = 8;

    /// <summary>The skills the data has.</summary>
    public static readonly IReadOnlyList<string> Skills = ["code", "db", "os"];

    /// <summary>
    /// The instruct base's generic question→answer tasks (tasks/generic: echo, first, last, second, len,
    /// join): no expert is trained on them, so a merged model's score there measures what it kept of the
    /// base. Scored with the skills' protocol; splits valid and test.
    /// </summary>
    public const string Generic = "generic";

    /// <summary>Every task folder the benchmark reads: the skills, then <see cref="Generic"/>.</summary>
    public static readonly IReadOnlyList<string> TaskFolders = [.. Skills, Generic];

    /// <inheritdoc/>
    public string Name => "tinyskills/" + options.Skill;

    /// <summary>The examples of the chosen skill and split (first <see cref="TinySkillsOptions.Limit"/>).</summary>
    public IReadOnlyList<TinySkillsExample> Examples()
    {
        if (!TaskFolders.Contains(options.Skill))
            throw new ArgumentException($"unknown TinySkills skill '{options.Skill}' (expected one of: {string.Join(", ", TaskFolders)})");
        string path = Path.Combine(options.TinySkillsDir, "tasks", options.Skill, options.Split + ".jsonl");
        if (!File.Exists(path)) throw new FileNotFoundException($"TinySkills split not found: {path}", path);
        var list = new List<TinySkillsExample>();
        int line = 0;
        foreach (var text in File.ReadLines(path))
        {
            line++;
            if (text.Length == 0) continue;
            try
            {
                using var doc = JsonDocument.Parse(text);
                var r = doc.RootElement;
                list.Add(new TinySkillsExample(r.GetProperty("id").GetString()!, r.GetProperty("prompt").GetString()!, r.GetProperty("answer").GetString()!));
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new InvalidDataException($"{path}:{line}: not a TinySkills example ({{\"id\",\"prompt\",\"answer\"}}): {e.Message}", e);
            }
            if (options.Limit is int n && list.Count >= n) break;
        }
        return list;
    }

    /// <summary>The prediction the README defines: the text up to the first newline, stripped.</summary>
    public static string Prediction(string continuation)
    {
        int nl = continuation.IndexOf('\n');
        return PythonStrings.Strip(nl >= 0 ? continuation[..nl] : continuation);
    }

    /// <inheritdoc/>
    public async Task<EvaluationReport> EvaluateAsync(ITextGenerator generator, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var examples = Examples();
        var requests = examples.Select(e => new GenerationRequest(e.Prompt, MaxNewTokens, ["\n"], AddBos: true, StopMatch: StopStringMatch.FirstOccurrence)).ToList();
        var results = await generator.GenerateAsync(requests, cancellationToken).ConfigureAwait(false);
        if (results.Count != requests.Count)
            throw new InvalidOperationException($"the generator returned {results.Count} results for {requests.Count} requests");
        var samples = new List<SampleOutcome>(examples.Count);
        int correct = 0;
        for (int i = 0; i < examples.Count; i++)
        {
            var e = examples[i];
            string pred = Prediction(results[i].Text);
            bool ok = pred == e.Answer;
            if (ok) correct++;
            samples.Add(new SampleOutcome(e.Id, ok, e.Prompt, ["assistant: " + results[i].Text],
                ok ? $"exact match {PythonRepr.Str(pred)}" : $"got {PythonRepr.Str(pred)}, expected {PythonRepr.Str(e.Answer)}"));
        }
        progress?.Report(new EvaluationProgress(Name, examples.Count, examples.Count));
        double acc = examples.Count == 0 ? 0 : (double)correct / examples.Count;
        return new EvaluationReport(Name, acc, new Dictionary<string, double> { ["accuracy"] = acc }, samples);
    }

    /// <summary>A responder that continues each prompt with " answer" (the training target without its newline).</summary>
    public ScriptedResponder CreateGoldResponder()
    {
        var answers = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var e in Examples()) answers[e.Prompt] = e.Answer;
        return new ScriptedResponder(req => answers.TryGetValue(req.Prompt, out var a)
            ? " " + a
            : throw new InvalidOperationException("the gold responder got a prompt that is not in this TinySkills split"));
    }
}
