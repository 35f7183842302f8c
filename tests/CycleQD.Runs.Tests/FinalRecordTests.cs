using System.Text;
using System.Text.Json.Nodes;
using CycleQD.Runs.Final;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

/// <summary>final/final.json as a typed record: what the final stage writes reads back whole, and other files are handled as a reader expects.</summary>
public class FinalRecordTests
{
    private static readonly string[] Tasks = ["tinyskills/code", "tinyskills/db"];

    private static FinalRecord Sample() => new()
    {
        Format = FinalRecord.CurrentFormat,
        Method = "search",
        Generations = 12,
        Seed = "18446744073709551615",
        Evaluation = "search=valid;report=test",
        BaseModel = "/models/base",
        Elites =
        [
            new FinalElite { Task = Tasks[0], Cell = [3, 4], BcTasks = [Tasks[1]], Id = "expert:tinyskills/code", Generation = -1, Weight = 0.25, File = null },
            new FinalElite { Task = Tasks[1], Cell = [0, 9], BcTasks = [Tasks[0]], Id = "0123456789abcdef", Generation = 7, Weight = 0.5, File = "elites/0123456789abcdef.safetensors" },
        ],
        Weights = [0.25, 0.5],
        BaseWeight = 0.25,
        Search = new FinalSearch { Split = "valid", TopPerArchive = 1, Candidates = "best", Generalists = 0, Grid = [0.5, 1], Rounds = 2, Tried = [new FinalTrial([1, 0], 0.4)] },
        SearchScores = FinalRecord.ByTask(Tasks, [0.1, 0.2]),
        TestScores = FinalRecord.ByTask(Tasks, [0.3, double.NaN]),
        Softmax = new FinalSoftmax { Temperature = 1, Weights = [0.4, 0.6], Elites = [new FinalSoftmaxElite(Tasks[0], "expert:tinyskills/code", 0.9, 0.4)] },
    };

    [Fact]
    public void WrittenRecord_ReadsBackEqual_AndRewritesToTheSameBytes()
    {
        using var dir = new TempDir();
        string path = dir.File("final.json");
        Sample().Write(path);
        byte[] first = File.ReadAllBytes(path);
        var back = FinalRecord.TryRead(path);
        Assert.NotNull(back);
        Assert.Equal(18446744073709551615UL.ToString(System.Globalization.CultureInfo.InvariantCulture), back.Seed);
        Assert.Equal([0.25, 0.5], back.Weights!);
        Assert.Equal([3, 4], back.Elites![0].Cell!);
        Assert.Equal("elites/0123456789abcdef.safetensors", back.Elites[1].File);
        Assert.Equal([0.1, 0.2], FinalRecord.InTaskOrder(back.SearchScores, Tasks)!);
        Assert.True(double.IsNaN(back.TestScores![Tasks[1]]));
        Assert.Equal(0.4, back.Search!.Tried![0].Average);
        Assert.Equal(first, back.ToJsonBytes());
        // snake_case names, as earlier builds wrote; an expert's file is an explicit null.
        var json = JsonNode.Parse(first)!.AsObject();
        Assert.Equal(0.25, json["base_weight"]!.GetValue<double>());
        Assert.Equal(1, json["search"]!["top_per_archive"]!.GetValue<int>());
        Assert.True(json["elites"]![0]!.AsObject().ContainsKey("file"));
        Assert.Null(json["elites"]![0]!["file"]);
        Assert.Equal(["format", "method", "generations"], json.Select(kv => kv.Key).Take(3));
    }

    [Fact]
    public void UnknownFields_AreKept_AndMissingOnesStayMissing()
    {
        using var dir = new TempDir();
        string path = dir.File("final.json");
        File.WriteAllText(path, """{"method": "ties of the best elites", "scores": {"tinyskills/db": 0.61}, "search": {"split": "valid", "note": "hand-made"}}""");
        var r = FinalRecord.TryRead(path);
        Assert.NotNull(r);
        Assert.Equal("ties of the best elites", r.Method);
        Assert.Null(r.Format);
        Assert.Null(r.Weights);
        Assert.Null(FinalRecord.InTaskOrder(r.SearchScores, Tasks));
        var shown = r.ToJsonObject();
        Assert.Equal(0.61, shown["scores"]!["tinyskills/db"]!.GetValue<double>());
        Assert.Equal("hand-made", shown["search"]!["note"]!.GetValue<string>());
        Assert.False(shown.ContainsKey("format"));
        Assert.False(shown.ContainsKey("weights"));
    }

    [Theory]
    [InlineData("{\"generations\": \"twelve\"}")]
    [InlineData("[1, 2]")]
    [InlineData("{\"weights\": [0.5,")]
    [InlineData("")]
    public void AFileThatIsNotAFinalRecord_ReadsAsNone(string text)
    {
        using var dir = new TempDir();
        string path = dir.File("final.json");
        File.WriteAllBytes(path, Encoding.UTF8.GetBytes(text));
        Assert.Null(FinalRecord.TryRead(path));
        Assert.Null(FinalRecord.TryRead(dir.File("absent.json")));
    }

    [Fact]
    public void InTaskOrder_NeedsEveryTask()
    {
        var scores = FinalRecord.ByTask(["a", "b"], [1.0, 2.0]);
        Assert.Equal([2.0, 1.0], FinalRecord.InTaskOrder(scores, ["b", "a"])!);
        Assert.Null(FinalRecord.InTaskOrder(scores, ["a", "c"]));
    }
}
