namespace CycleQD.Onnx.Sam;

/// <summary>Parameter and floating-point-operation counts of a SAM architecture (one FLOP = one multiply or one add; a multiply-add is 2).</summary>
/// <param name="Parameters">Every tensor of a SamModel checkpoint.</param>
/// <param name="EncoderParameters">Tensors of the image encoder graph.</param>
/// <param name="DecoderParameters">Tensors of the prompt + mask decoder graph.</param>
/// <param name="EncoderFlops">One image through the encoder: linear layers, convolutions and attention products (norms, softmax and activations, below 1% here, are left out).</param>
/// <param name="DecoderFlops">One prompt with <paramref name="SparseTokens"/> point/box tokens, all mask tokens computed.</param>
/// <param name="SparseTokens">Prompt tokens assumed for <paramref name="DecoderFlops"/> (a box is 2).</param>
public sealed record SamCost(long Parameters, long EncoderParameters, long DecoderParameters, double EncoderFlops, double DecoderFlops, int SparseTokens)
{
    /// <summary>The architecture of facebook/sam-vit-base (segment-anything's vit_b): ViT width 768, 12 blocks of 12 heads, window 14, global attention at blocks 2, 5, 8, 11, 1024-pixel input, patch 16, 256 output channels; the standard prompt encoder and mask decoder.</summary>
    public static SamConfig SamVitBase => new()
    {
        Vision = new SamVisionConfig
        {
            HiddenSize = 768, OutputChannels = 256, NumHiddenLayers = 12, NumAttentionHeads = 12, ImageSize = 1024, PatchSize = 16,
            WindowSize = 14, GlobalAttnIndexes = [2, 5, 8, 11], NumPosFeats = 128, MlpDim = 3072,
        },
    };

    /// <summary>Counts for <paramref name="config"/>, the decoder for a prompt of <paramref name="sparseTokens"/> tokens.</summary>
    public static SamCost Of(SamConfig config, int sparseTokens = 2)
    {
        static long Count(IEnumerable<Graph.LlamaWeightSpec> specs) => specs.Sum(s => s.Shape.Aggregate(1L, (a, b) => a * b));
        var v = config.Vision;
        double d = v.HiddenSize, grid = v.GridSize, tokens = grid * grid, c = v.OutputChannels, p = v.PatchSize;

        double enc = 2 * tokens * d * v.NumChannels * p * p; // patch embedding
        for (int i = 0; i < v.NumHiddenLayers; i++)
        {
            int window = v.WindowOf(i);
            double side = window > 0 ? window : grid;
            // Windowed blocks attend over the zero-padded grid, so qkv and the output projection see the padding too.
            double padded = window > 0 ? Math.Pow(Math.Ceiling(grid / window) * window, 2) : tokens;
            double len = side * side, windows = padded / len;
            enc += 2 * padded * d * 3 * d + 2 * padded * d * d;      // qkv, proj
            enc += windows * (2 * 2 * len * len * d);                 // q·kᵀ and probs·v over all heads
            if (v.UseRelPos) enc += windows * (2 * 2 * len * side * d); // q·Rh and q·Rw
            enc += 2 * 2 * tokens * d * v.MlpDim;                    // MLP
        }
        enc += 2 * tokens * d * c + 2 * tokens * c * c * 9;           // neck

        var m = config.MaskDecoder;
        double t = 1 + m.NumMaskTokens + sparseTokens, hw = tokens, cm = m.HiddenSize, inner = cm / m.AttentionDownsampleRate;
        double Attn(double queries, double keys, double width) =>
            2 * queries * cm * width + 2 * 2 * keys * cm * width + 2 * queries * width * cm + 2 * 2 * queries * keys * width;
        double dec = 2 * hw * 2 * v.NumPosFeats + 2 * t * 2 * v.NumPosFeats;   // positional encodings
        for (int i = 0; i < m.NumHiddenLayers; i++)
            dec += Attn(t, t, cm) + Attn(t, hw, inner) + 2 * 2 * t * cm * m.MlpDim + Attn(hw, t, inner);
        dec += Attn(t, hw, inner);
        dec += 2 * (4 * hw) * (cm / 4) * cm + 2 * (16 * hw) * (cm / 8) * (cm / 4); // transposed convolutions
        dec += m.NumMaskTokens * 2 * (2 * cm * cm + cm * cm / 8) + 2 * m.NumMaskTokens * (cm / 8) * 16 * hw; // hypernetworks, mask product
        dec += 2 * (cm * m.IouHeadHiddenDim + (m.IouHeadDepth - 2) * (double)m.IouHeadHiddenDim * m.IouHeadHiddenDim + m.IouHeadHiddenDim * m.NumMaskTokens);

        return new SamCost(SamWeightLayout.ParameterCount(config), Count(SamWeightLayout.Encoder(config)), Count(SamWeightLayout.Decoder(config)), enc, dec, sparseTokens);
    }
}
