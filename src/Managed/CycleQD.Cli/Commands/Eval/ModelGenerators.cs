using CycleQD.Core.Evaluation;

namespace CycleQD.Cli.Commands.Eval;

/// <summary>
/// The one seam between `cycleqd eval --model DIR` and the inference component: a function that
/// opens a model folder as an <see cref="ITextGenerator"/> (disposed after the evaluation when it
/// is <see cref="IDisposable"/>). Until the ONNX generator is wired here, model-backed evaluation
/// reports that it needs it.
/// </summary>
internal static class ModelGenerators
{
    /// <summary>Opens a Hugging Face model folder for generation; null while no inference component is wired.</summary>
    public static Func<string, ITextGenerator>? Open { get; set; }

    public static ITextGenerator OpenOrExplain(string modelDir)
    {
        if (!Directory.Exists(modelDir)) throw new DirectoryNotFoundException($"model folder not found: {modelDir}");
        return (Open ?? throw new CliUsageException(
                "model-backed evaluation needs the inference component (the ONNX text generator), which this build does not include yet; " +
                "use --responder scripted:gold to run the harness without a model"))(modelDir);
    }
}
