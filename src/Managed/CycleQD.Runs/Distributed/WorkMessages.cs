using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using CycleQD.Core.Candidates;
using CycleQD.Core.Compute;
using CycleQD.Core.Engine;

namespace CycleQD.Runs.Distributed;

/// <summary>
/// One evaluation a coordinator hands out: a recipe, never weights. A child job names its
/// generation, parents (elite ids, read from the run directory), crossover weights and mutation
/// key; the worker rebuilds the child on its own backend and scores it. An expert job names the
/// expert. <see cref="Build"/> and <see cref="Backend"/> are the coordinator's: a worker of another
/// build or backend kind would rebuild other bits, so it refuses.
/// </summary>
internal sealed record WorkJob
{
    public required string Run { get; init; }

    /// <summary>"gen-G" for a child, "expert-NAME" for an expert.</summary>
    public required string Id { get; init; }

    /// <summary>"child" or "expert".</summary>
    public required string Kind { get; init; }

    public string? Expert { get; init; }

    public int Generation { get; init; }

    public int QualityTask { get; init; }

    public IReadOnlyList<string> Parents { get; init; } = [];

    public IReadOnlyList<float> Weights { get; init; } = [];

    public string? Mutation { get; init; }

    public ulong Seed { get; init; }

    public required string Build { get; init; }

    /// <summary>"cpu" or "cuda".</summary>
    public required string Backend { get; init; }

    /// <summary>A hash of everything above that defines the candidate: a result counts only for the same recipe.</summary>
    public string Recipe => RecipeOf(Kind, Expert, Generation, QualityTask, Parents, Weights, Mutation, Seed);

    public static WorkJob For(string run, CandidateContext context, string build, string backend)
    {
        if (context.Expert is { } name)
            return new WorkJob { Run = run, Id = "expert-" + name, Kind = "expert", Expert = name, Generation = -1, Build = build, Backend = backend };
        var plan = context.Plan ?? throw new ArgumentException("a candidate context names an expert or a plan", nameof(context));
        var key = context.Mutation ?? throw new ArgumentException("a child's context carries its mutation key", nameof(context));
        return new WorkJob
        {
            Run = run, Id = "gen-" + plan.Generation.ToString(System.Globalization.CultureInfo.InvariantCulture), Kind = "child",
            Generation = plan.Generation, QualityTask = plan.QualityTask, Parents = [.. plan.Parents], Weights = [.. plan.Weights],
            Mutation = key.Kind.ToString().ToLowerInvariant(), Seed = key.Seed, Build = build, Backend = backend,
        };
    }

    /// <summary>The child's plan (child jobs only).</summary>
    public BreedingPlan Plan => new(Generation, QualityTask, Parents, Weights);

    private static string RecipeOf(string kind, string? expert, int generation, int quality, IReadOnlyList<string> parents, IReadOnlyList<float> weights, string? mutation, ulong seed)
    {
        var sb = new StringBuilder();
        sb.Append(kind).Append('\0').Append(expert).Append('\0').Append(generation).Append('\0').Append(quality).Append('\0');
        foreach (var p in parents) sb.Append(p).Append('\0');
        // Float bits, not text: the recipe must not depend on how a number is printed.
        foreach (var w in weights) sb.Append(BitConverter.SingleToUInt32Bits(w).ToString("x8", System.Globalization.CultureInfo.InvariantCulture)).Append('\0');
        sb.Append(mutation).Append('\0').Append(seed);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())).AsSpan(0, 12));
    }

    public string ToJson() => JsonSerializer.Serialize(this, WorkJson.Options);

    public static WorkJob Parse(string json) => JsonSerializer.Deserialize<WorkJob>(json, WorkJson.Options)
        ?? throw new JsonException("empty job");
}

/// <summary>What a worker sends back for one job.</summary>
internal sealed record WorkResult
{
    public required string Run { get; init; }

    public required string Id { get; init; }

    /// <summary>The job's <see cref="WorkJob.Recipe"/>.</summary>
    public required string Recipe { get; init; }

    public required string Worker { get; init; }

    /// <summary>Scores in task order (zeros for a non-finite child).</summary>
    public IReadOnlyList<double> Scores { get; init; } = [];

    /// <summary>Set when the rebuilt child overflowed to NaN or ∞.</summary>
    public string? NonFinite { get; init; }

    /// <summary>The rebuilt child's <see cref="ChildFingerprint"/>, so the coordinator can check it built the same bits.</summary>
    public string? ChildFingerprint { get; init; }

    /// <summary>Set when the worker could not score the job (not a score: the coordinator stops with it).</summary>
    public string? Error { get; init; }

    public double BuildSeconds { get; init; }

    public double EvaluateSeconds { get; init; }

    public IReadOnlyList<TaskEvaluationStatistics>? Statistics { get; init; }

    public string ToJson() => JsonSerializer.Serialize(this, WorkJson.Options);

    public static WorkResult Parse(string json) => JsonSerializer.Deserialize<WorkResult>(json, WorkJson.Options)
        ?? throw new JsonException("empty result");
}

internal static class WorkJson
{
    public static readonly JsonSerializerOptions Options = new(Tensors.ReadableJson.Compact)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };
}

/// <summary>Which build and backend kind a process runs: a worker must match the coordinator's to rebuild the same bits.</summary>
internal static class WorkerIdentity
{
    /// <summary>The informational version of this build (version + commit where the build recorded it).</summary>
    public static string Build { get; } =
        typeof(WorkerIdentity).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion
        ?? typeof(WorkerIdentity).Assembly.GetName().Version?.ToString() ?? "unknown";

    /// <summary>"cuda" for the GPU backend ("cuda:0" → "cuda"), else the backend's name.</summary>
    public static string BackendKind(IComputeBackend backend) => backend.Name.Split(':')[0];
}
