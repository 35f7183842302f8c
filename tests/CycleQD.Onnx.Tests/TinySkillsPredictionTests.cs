using System.Text.Json;
using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Generation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Onnx.Tokenization;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

/// <summary>
/// The TinySkills evaluation protocol (greedy, at most 8 new tokens, stop at a newline, strip) run
/// for several models through one session with their weights swapped in, against the reference
/// implementation's recorded predictions.
/// </summary>
public sealed class TinySkillsPredictionTests
{
    [Fact]
    public void OneSessionSwappingWeights_ReproducesReferencePredictions()
    {
        string root = TestPaths.RequireSharedData("models", "tinyskills");
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(root, "eval", "predictions.json")));
        var baseFolder = HfModelFolder.Open(Path.Combine(root, "base"));
        var tokenizer = TextTokenizer.Load(baseFolder);
        using var session = new LlamaSession(baseFolder.Config, new LlamaGraphOptions(LastPositionLogitsOnly: true));
        string[] skills = ["code", "db", "os"];
        var prompts = skills.ToDictionary(s => s, s => File.ReadLines(Path.Combine(root, "tasks", s, "test.jsonl"))
            .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("prompt").GetString()!).ToList());

        int compared = 0;
        foreach (var (folder, key) in new[] { ("base", "base"), ("expert-code", "expert-code"), ("expert-db", "expert-db"), ("expert-os", "expert-os"), ("merged-ties", "ties") })
        {
            using var file = SafetensorsModel.Open(Path.Combine(root, folder));
            using var weights = LlamaWeights.FromSafetensors(file, baseFolder.Config);
            var generator = new LlamaGenerator(session, weights, tokenizer, [2], maxBatch: 64);
            foreach (var skill in skills)
            {
                var requests = prompts[skill].Select(p => new GenerationRequest(p, MaxNewTokens: 8, StopStrings: ["\n"], StopMatch: StopStringMatch.FirstOccurrence)).ToList();
                var results = generator.Generate(requests, TestContext.Current.CancellationToken);
                var expected = doc.RootElement.GetProperty(key).GetProperty("test").GetProperty(skill).EnumerateArray().Select(e => e.GetString()!).ToList();
                Assert.Equal(expected.Count, results.Count);
                for (int i = 0; i < expected.Count; i++)
                {
                    Assert.True(expected[i] == results[i].Text.Trim(), $"{folder} {skill} #{i} \"{prompts[skill][i]}\": expected \"{expected[i]}\", got \"{results[i].Text.Trim()}\"");
                    compared++;
                }
            }
        }
        Assert.Equal(5 * 3 * 200, compared);
    }
}
