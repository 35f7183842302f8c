namespace CycleQD.Onnx.Sam;

/// <summary>A prompt for one mask, in the coordinates of the resized (longest side = ImageSize), unpadded input image.</summary>
/// <param name="Box">x0, y0, x1, y1, or null.</param>
/// <param name="Points">x, y pairs, or null.</param>
/// <param name="PointLabels">1 foreground, 0 background, one per point, or null.</param>
public sealed record SamPrompt(float[]? Box, float[]? Points, int[]? PointLabels);

/// <summary>Decoder output for one prompt.</summary>
/// <param name="LowResMasks">[MaskCount, LowResSize, LowResSize] logits, row-major.</param>
/// <param name="IouPredictions">[MaskCount].</param>
public sealed record SamMaskOutput(float[] LowResMasks, float[] IouPredictions, int MaskCount, int LowResSize);

/// <summary>A SAM model that encodes images and decodes prompts (ONNX Runtime sessions behind it).</summary>
public interface ISamPredictor : IDisposable
{
    /// <summary>Side of the square encoder input (1024 for the public checkpoints).</summary>
    int ImageSize { get; }
    /// <summary>Image embedding of a [3, ImageSize, ImageSize] normalised, zero-padded CHW image.</summary>
    float[] EncodeImage(float[] pixels);
    /// <summary>Masks for one prompt on an embedding from <see cref="EncodeImage"/>.</summary>
    SamMaskOutput Decode(float[] imageEmbedding, SamPrompt prompt, bool multimask);
}
