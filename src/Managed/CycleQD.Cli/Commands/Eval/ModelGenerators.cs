using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Runtime;
using CycleQD.Runs.Families;

namespace CycleQD.Cli.Commands.Eval;

/// <summary>
/// Opens a model folder for `cycleqd eval --model DIR`: the ONNX Runtime Llama generator (CPU
/// provider), owned by the returned object and released when it is disposed.
/// </summary>
internal static class ModelGenerators
{
    public static ITextGenerator Open(string modelDir, string task)
    {
        if (!Directory.Exists(modelDir)) throw new DirectoryNotFoundException($"model folder not found: {modelDir}");
        ModelKindCheck.Require(modelDir, ModelFamilies.Llama, $"eval --task {task}");
        return new OwnedModelGenerator(LlamaModel.Open(modelDir));
    }

    /// <summary>A model's generator that also owns the model (session, weights, tokenizer).</summary>
    private sealed class OwnedModelGenerator(LlamaModel model) : ITextGenerator, IDisposable
    {
        public Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, CancellationToken cancellationToken = default) =>
            model.Generator.GenerateAsync(requests, cancellationToken);

        public void Dispose() => model.Dispose();
    }
}
