using CycleQD.Onnx.Graph;

namespace CycleQD.Onnx.Sam;

/// <summary>
/// The weight tensors of a Hugging Face SamModel of a given config, by transformers' names and
/// PyTorch shapes (linear layers [out, in], convolutions [out, in, kh, kw], transposed
/// convolutions [in, out, kh, kw]).
/// </summary>
public static class SamWeightLayout
{
    /// <summary>The random Fourier projection [2, num_pos_feats] shared by the image positional encoding and the prompt encoder.</summary>
    public const string PositionalEmbedding = "shared_image_embedding.positional_embedding";

    /// <summary>transformers ties the prompt encoder's copy of <see cref="PositionalEmbedding"/> to it; a checkpoint may hold it too.</summary>
    public const string TiedPositionalEmbedding = "prompt_encoder.shared_embedding.positional_embedding";

    /// <summary>Weights the image encoder graph reads, in graph-input order.</summary>
    public static IReadOnlyList<LlamaWeightSpec> Encoder(SamConfig config)
    {
        var v = config.Vision;
        long d = v.HiddenSize, g = v.GridSize, c = v.OutputChannels, hd = v.HeadDim;
        var list = new List<LlamaWeightSpec>
        {
            new("vision_encoder.patch_embed.projection.weight", [d, v.NumChannels, v.PatchSize, v.PatchSize]),
            new("vision_encoder.patch_embed.projection.bias", [d]),
        };
        if (v.UseAbsPos) list.Add(new("vision_encoder.pos_embed", [1, g, g, d]));
        for (int i = 0; i < v.NumHiddenLayers; i++)
        {
            string p = $"vision_encoder.layers.{i}.";
            long side = v.WindowOf(i) > 0 ? v.WindowOf(i) : g;
            list.Add(new(p + "layer_norm1.weight", [d]));
            list.Add(new(p + "layer_norm1.bias", [d]));
            list.Add(new(p + "attn.qkv.weight", [3 * d, d]));
            if (v.QkvBias) list.Add(new(p + "attn.qkv.bias", [3 * d]));
            list.Add(new(p + "attn.proj.weight", [d, d]));
            list.Add(new(p + "attn.proj.bias", [d]));
            if (v.UseRelPos)
            {
                list.Add(new(p + "attn.rel_pos_h", [2 * side - 1, hd]));
                list.Add(new(p + "attn.rel_pos_w", [2 * side - 1, hd]));
            }
            list.Add(new(p + "layer_norm2.weight", [d]));
            list.Add(new(p + "layer_norm2.bias", [d]));
            list.Add(new(p + "mlp.lin1.weight", [v.MlpDim, d]));
            list.Add(new(p + "mlp.lin1.bias", [v.MlpDim]));
            list.Add(new(p + "mlp.lin2.weight", [d, v.MlpDim]));
            list.Add(new(p + "mlp.lin2.bias", [d]));
        }
        list.Add(new("vision_encoder.neck.conv1.weight", [c, d, 1, 1]));
        list.Add(new("vision_encoder.neck.layer_norm1.weight", [c]));
        list.Add(new("vision_encoder.neck.layer_norm1.bias", [c]));
        list.Add(new("vision_encoder.neck.conv2.weight", [c, c, 3, 3]));
        list.Add(new("vision_encoder.neck.layer_norm2.weight", [c]));
        list.Add(new("vision_encoder.neck.layer_norm2.bias", [c]));
        return list;
    }

    /// <summary>Weights the prompt + mask decoder graph reads, in graph-input order.</summary>
    public static IReadOnlyList<LlamaWeightSpec> Decoder(SamConfig config)
    {
        var m = config.MaskDecoder;
        long c = m.HiddenSize, cross = c / m.AttentionDownsampleRate, tokens = m.NumMaskTokens, ih = m.IouHeadHiddenDim;
        var list = new List<LlamaWeightSpec>
        {
            new(PositionalEmbedding, [2, config.Vision.NumPosFeats]),
            new("prompt_encoder.no_mask_embed.weight", [1, c]),
        };
        for (int k = 0; k < config.PromptEncoder.NumPointEmbeddings; k++) list.Add(new($"prompt_encoder.point_embed.{k}.weight", [1, c]));
        list.Add(new("prompt_encoder.not_a_point_embed.weight", [1, c]));
        list.Add(new("mask_decoder.iou_token.weight", [1, c]));
        list.Add(new("mask_decoder.mask_tokens.weight", [tokens, c]));

        void Attention(string p, long inner)
        {
            foreach (string proj in new[] { "q_proj", "k_proj", "v_proj" })
            {
                list.Add(new($"{p}.{proj}.weight", [inner, c]));
                list.Add(new($"{p}.{proj}.bias", [inner]));
            }
            list.Add(new($"{p}.out_proj.weight", [c, inner]));
            list.Add(new($"{p}.out_proj.bias", [c]));
        }
        void Norm(string p) { list.Add(new(p + ".weight", [c])); list.Add(new(p + ".bias", [c])); }
        void Linear(string p, long outF, long inF) { list.Add(new(p + ".weight", [outF, inF])); list.Add(new(p + ".bias", [outF])); }

        for (int i = 0; i < m.NumHiddenLayers; i++)
        {
            string p = $"mask_decoder.transformer.layers.{i}";
            Attention(p + ".self_attn", c);
            Norm(p + ".layer_norm1");
            Attention(p + ".cross_attn_token_to_image", cross);
            Norm(p + ".layer_norm2");
            Linear(p + ".mlp.lin1", m.MlpDim, c);
            Linear(p + ".mlp.lin2", c, m.MlpDim);
            Norm(p + ".layer_norm3");
            Norm(p + ".layer_norm4");
            Attention(p + ".cross_attn_image_to_token", cross);
        }
        Attention("mask_decoder.transformer.final_attn_token_to_image", cross);
        Norm("mask_decoder.transformer.layer_norm_final_attn");
        list.Add(new("mask_decoder.upscale_conv1.weight", [c, c / 4, 2, 2]));
        list.Add(new("mask_decoder.upscale_conv1.bias", [c / 4]));
        list.Add(new("mask_decoder.upscale_conv2.weight", [c / 4, c / 8, 2, 2]));
        list.Add(new("mask_decoder.upscale_conv2.bias", [c / 8]));
        list.Add(new("mask_decoder.upscale_layer_norm.weight", [c / 4]));
        list.Add(new("mask_decoder.upscale_layer_norm.bias", [c / 4]));
        for (int t = 0; t < tokens; t++)
        {
            string p = $"mask_decoder.output_hypernetworks_mlps.{t}";
            Linear(p + ".proj_in", c, c);
            Linear(p + ".layers.0", c, c);
            Linear(p + ".proj_out", c / 8, c);
        }
        Linear("mask_decoder.iou_prediction_head.proj_in", ih, c);
        for (int k = 0; k < m.IouHeadDepth - 2; k++) Linear($"mask_decoder.iou_prediction_head.layers.{k}", ih, ih);
        Linear("mask_decoder.iou_prediction_head.proj_out", tokens, ih);
        return list;
    }

    /// <summary>
    /// Weights a SamModel has that neither graph reads: the mask-prompt embedding (mask prompts are
    /// not supported). They are part of a complete checkpoint, so they are expected, checked and written.
    /// </summary>
    public static IReadOnlyList<LlamaWeightSpec> Unused(SamConfig config)
    {
        var p = config.PromptEncoder;
        long quarter = p.MaskInputChannels / 4, mic = p.MaskInputChannels, c = p.HiddenSize;
        return
        [
            new("prompt_encoder.mask_embed.conv1.weight", [quarter, 1, 2, 2]),
            new("prompt_encoder.mask_embed.conv1.bias", [quarter]),
            new("prompt_encoder.mask_embed.conv2.weight", [mic, quarter, 2, 2]),
            new("prompt_encoder.mask_embed.conv2.bias", [mic]),
            new("prompt_encoder.mask_embed.conv3.weight", [c, mic, 1, 1]),
            new("prompt_encoder.mask_embed.conv3.bias", [c]),
            new("prompt_encoder.mask_embed.layer_norm1.weight", [quarter]),
            new("prompt_encoder.mask_embed.layer_norm1.bias", [quarter]),
            new("prompt_encoder.mask_embed.layer_norm2.weight", [mic]),
            new("prompt_encoder.mask_embed.layer_norm2.bias", [mic]),
        ];
    }

    /// <summary>Every tensor of a complete SamModel checkpoint: encoder, decoder, then the unused mask embedding.</summary>
    public static IReadOnlyList<LlamaWeightSpec> All(SamConfig config) => [.. Encoder(config), .. Decoder(config), .. Unused(config)];

    /// <summary>Parameter count of the model (every tensor of <see cref="All"/>).</summary>
    public static long ParameterCount(SamConfig config) =>
        All(config).Sum(s => s.Shape.Aggregate(1L, (a, b) => a * b));
}
