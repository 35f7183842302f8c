using CycleQD.Core.Evaluation;
using CycleQD.Onnx.Runtime;
using CycleQD.Runs.Families;

namespace CycleQD.Cli.Commands.Eval;

/// <summary>
/// Opens a model folder for `cycleqd eval --model DIR`: the ONNX Runtime Llama generator on the
/// chosen provider, owned by the returned object and released when it is disposed.
/// </summary>
internal static class ModelGenerators
{
    /// <param name="modelDir">The model folder.</param>
    /// <param name="task">The task it is opened for, as the wrong-kind message names it.</param>
    /// <param name="threads">ONNX Runtime intra-op threads (0: its default).</param>
    /// <param name="device">Execution provider.</param>
    /// <param name="type">Graph and weight type.</param>
    /// <param name="graph">The graph; null for the default of the device and type.</param>
    public static ITextGenerator Open(string modelDir, string task, int threads, InferenceDevice device, Onnx.Graph.OnnxElementType type, Onnx.Graph.LlamaGraphKind? graph)
    {
        if (!Directory.Exists(modelDir)) throw new DirectoryNotFoundException($"model folder not found: {modelDir}");
        ModelKindCheck.Require(modelDir, ModelFamilies.Llama, $"eval --task {task}");
        return new OwnedModelGenerator(LlamaModel.Open(modelDir, device, intraOpThreads: threads, elementType: type, graph: graph));
    }

    /// <summary>A model's generator that also owns the model (session, weights, tokenizer).</summary>
    private sealed class OwnedModelGenerator(LlamaModel model) : ITextGenerator, IDisposable
    {
        public Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, CancellationToken cancellationToken = default) =>
            model.Generator.GenerateAsync(requests, cancellationToken);

        public void Dispose() => model.Dispose();
    }
}
