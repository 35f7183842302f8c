using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using CycleQD.Tensors;

namespace CycleQD.Runs.Final;

/// <summary>
/// final/final.json: how the final model was made (which elites, which weights, how they were
/// searched, the scores). The final stage writes it and reads it back on resume; export shows it
/// in the model card. <see cref="TryRead"/> and <see cref="Write"/> are the only code that touches
/// the file. Fields a reader does not know are kept (<see cref="Extra"/>), so a card shows a newer
/// file whole.
/// </summary>
internal sealed record FinalRecord
{
    /// <summary>The file format this build writes.</summary>
    public const int CurrentFormat = 1;

    /// <summary>The format version (<see cref="CurrentFormat"/> when this build wrote it).</summary>
    public int? Format { get; init; }

    /// <summary>final_merge.method: which merge final/model.safetensors holds ("search" or "softmax").</summary>
    public string? Method { get; init; }

    /// <summary>In words, which of the two merges the model file is.</summary>
    public string? ModelFile { get; init; }

    public string? Formula { get; init; }

    /// <summary>The generation count the final stage ran at.</summary>
    public int? Generations { get; init; }

    /// <summary>The run's seed, as text (a ulong).</summary>
    public string? Seed { get; init; }

    /// <summary>The evaluation settings the scores belong to (FinalStage.EvaluationKey).</summary>
    public string? Evaluation { get; init; }

    /// <summary>The model file, relative to final/.</summary>
    public string? Model { get; init; }

    public string? BaseModel { get; init; }

    /// <summary>The searched merge's elites, in weight order.</summary>
    public IReadOnlyList<FinalElite>? Elites { get; init; }

    /// <summary>The searched merge's weights wᵢ, one per elite.</summary>
    public IReadOnlyList<double>? Weights { get; init; }

    /// <summary>1 − Σ wᵢ: the base model's own share.</summary>
    public double? BaseWeight { get; init; }

    public FinalSearch? Search { get; init; }

    public IReadOnlyDictionary<string, double>? SearchScores { get; init; }

    public double? SearchAverage { get; init; }

    public IReadOnlyDictionary<string, double>? TestScores { get; init; }

    public double? TestAverage { get; init; }

    /// <summary>The searched merge's scores on report.retention's tasks (test split), when the run has any.</summary>
    public IReadOnlyDictionary<string, double>? RetentionScores { get; init; }

    /// <summary>The paper's softmax merge of the archive bests, scored on both splits.</summary>
    public FinalSoftmax? Softmax { get; init; }

    /// <summary>Fields this build does not know.</summary>
    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Extra { get; init; }

    private static readonly JsonSerializerOptions Options = new(ReadableJson.Indented)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        // A missing optional field stays missing rather than turning into "null" on a rewrite.
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The record in <paramref name="path"/>; null when there is no file or it is not a final.json (unreadable JSON, wrong shape).</summary>
    public static FinalRecord? TryRead(string path)
    {
        try
        {
            return File.Exists(path) ? JsonSerializer.Deserialize<FinalRecord>(File.ReadAllBytes(path), Options) : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Writes the record to <paramref name="path"/> atomically (a crash leaves the old file or the new one).</summary>
    public void Write(string path) =>
        RunDirectory.WriteAtomically(path, ToJsonBytes());

    /// <summary>The file's bytes: indented JSON and a final newline.</summary>
    public byte[] ToJsonBytes() => [.. JsonSerializer.SerializeToUtf8Bytes(this, Options), (byte)'\n'];

    /// <summary>The record as a JSON tree (the model card's appendix).</summary>
    public JsonObject ToJsonObject() => JsonSerializer.SerializeToNode(this, Options)!.AsObject();

    /// <summary>The scores of <paramref name="tasks"/> in order; null when one is missing.</summary>
    public static double[]? InTaskOrder(IReadOnlyDictionary<string, double>? scores, IReadOnlyList<string> tasks)
    {
        if (scores is null) return null;
        var s = new double[tasks.Count];
        for (int t = 0; t < tasks.Count; t++)
            if (!scores.TryGetValue(tasks[t], out s[t])) return null;
        return s;
    }

    /// <summary>Scores by task name, in <paramref name="tasks"/> order.</summary>
    public static IReadOnlyDictionary<string, double> ByTask(IReadOnlyList<string> tasks, IReadOnlyList<double> scores)
    {
        var d = new Dictionary<string, double>(tasks.Count, StringComparer.Ordinal);
        for (int t = 0; t < tasks.Count; t++) d[tasks[t]] = scores[t];
        return d;
    }
}

/// <summary>One elite of the searched final merge.</summary>
internal sealed record FinalElite
{
    /// <summary>The task of the archive it was taken from.</summary>
    public string? Task { get; init; }

    /// <summary>Its cell in that archive, one index per behaviour characteristic.</summary>
    public IReadOnlyList<int>? Cell { get; init; }

    public IReadOnlyList<string>? BcTasks { get; init; }

    /// <summary>The weight set's id: a content hash, or "expert:TASK".</summary>
    public string? Id { get; init; }

    public int? Generation { get; init; }

    /// <summary>"archive_best" or "generalist".</summary>
    public string? SelectedAs { get; init; }

    public int? Rank { get; init; }

    /// <summary>Why it was taken, in words.</summary>
    public string? Reason { get; init; }

    public double? MeanSearchScore { get; init; }

    public double? Weight { get; init; }

    public IReadOnlyDictionary<string, double>? SearchScores { get; init; }

    /// <summary>Its file relative to the run folder; absent for an expert (its weights are the expert's folder).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? File { get; init; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Extra { get; init; }
}

/// <summary>How the searched merge's weights were found.</summary>
internal sealed record FinalSearch
{
    /// <summary>The split the weights were chosen on.</summary>
    public string? Split { get; init; }

    public string? Objective { get; init; }

    public int? TopPerArchive { get; init; }

    /// <summary>final_merge.candidates; a file written before it was recorded means "best".</summary>
    public string? Candidates { get; init; }

    public int? Generalists { get; init; }

    public IReadOnlyList<double>? Grid { get; init; }

    public int? Rounds { get; init; }

    public string? Phases { get; init; }

    public int? Trials { get; init; }

    public int? Evaluations { get; init; }

    public double? Seconds { get; init; }

    public IReadOnlyList<FinalTrial>? Tried { get; init; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Extra { get; init; }
}

/// <summary>One weight vector the search tried and its average search-split score.</summary>
internal sealed record FinalTrial(IReadOnlyList<double> Weights, double Average);

/// <summary>The paper's softmax merge of the archive bests.</summary>
internal sealed record FinalSoftmax
{
    public string? Formula { get; init; }

    public double? Temperature { get; init; }

    public IReadOnlyList<FinalSoftmaxElite>? Elites { get; init; }

    /// <summary>β, one per archive best.</summary>
    public IReadOnlyList<double>? Weights { get; init; }

    public IReadOnlyDictionary<string, double>? SearchScores { get; init; }

    public double? SearchAverage { get; init; }

    public IReadOnlyDictionary<string, double>? TestScores { get; init; }

    public double? TestAverage { get; init; }

    /// <summary>Scores on report.retention's tasks (test split), when the run has any.</summary>
    public IReadOnlyDictionary<string, double>? RetentionScores { get; init; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Extra { get; init; }
}

/// <summary>One archive's best elite in the softmax merge.</summary>
internal sealed record FinalSoftmaxElite(string? Archive, string? Id, double? Quality, double? Beta);
