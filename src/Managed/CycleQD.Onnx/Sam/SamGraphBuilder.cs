using CycleQD.Onnx.Graph;

namespace CycleQD.Onnx.Sam;

/// <summary>
/// Builds the two ONNX graphs of a Hugging Face SamModel, with every weight a named graph input
/// (see <see cref="SamWeightLayout"/>), so one pair of sessions serves any weights of the architecture.
/// </summary>
/// <remarks>
/// Image encoder: input <c>pixel_values</c> float32 [batch, channels, image, image] (normalised,
/// padded); output <c>image_embeddings</c> [batch, output_channels, grid, grid].
/// Prompt + mask decoder (one image, one prompt): inputs <c>image_embeddings</c> [1, C, grid, grid],
/// <c>point_coords</c> [1, points, 2] (x, y in input-image pixels, before SAM's half-pixel shift) and
/// <c>point_labels</c> [1, points] (float: -1 padding point, 0 background, 1 foreground, 2 box
/// top-left, 3 box bottom-right); outputs <c>low_res_masks</c> [1, mask_tokens, 4·grid, 4·grid] logits
/// and <c>iou_predictions</c> [1, mask_tokens] for every mask token (token 0 is the single-mask output,
/// tokens 1.. the multimask outputs). Mask prompts are not supported (the no-mask embedding is used).
/// Linear layers are Gemm with transB over PyTorch's [out, in] layout, so weights bind unchanged.
/// </remarks>
public static class SamGraphBuilder
{
    /// <summary>Opset of the standard domain the graphs use (LayerNormalization needs 17).</summary>
    public const int Opset = 17;

    /// <summary>Graph input and output names.</summary>
    public const string PixelValues = "pixel_values", ImageEmbeddings = "image_embeddings", PointCoords = "point_coords",
        PointLabels = "point_labels", LowResMasks = "low_res_masks", IouPredictions = "iou_predictions";

    /// <summary>Epsilon of the channels-first LayerNorms (neck, upscaling): transformers' SamLayerNorm default.</summary>
    private const double ChannelNormEps = 1e-6;

    /// <summary>Epsilon of the two-way transformer's final LayerNorm: PyTorch's default, as transformers builds it.</summary>
    private const double FinalAttentionNormEps = 1e-5;

    private const OnnxElementType F32 = OnnxElementType.Float;

    /// <summary>The image encoder graph.</summary>
    public static OnnxGraph BuildEncoder(SamConfig config)
    {
        var v = config.Vision;
        var g = new OnnxGraph("sam_image_encoder", Opset);
        int d = v.HiddenSize, grid = v.GridSize, p = v.PatchSize;
        string pixels = g.Input(PixelValues, F32, "batch", v.NumChannels, v.ImageSize, v.ImageSize);
        foreach (var w in SamWeightLayout.Encoder(config)) g.Input(w.Name, F32, w.Shape.Select(x => (OnnxDim)x).ToArray());

        string x = g.Node("Conv", [pixels, "vision_encoder.patch_embed.projection.weight", "vision_encoder.patch_embed.projection.bias"],
            ("kernel_shape", new long[] { p, p }), ("strides", new long[] { p, p }));
        x = g.Node("Transpose", [x], ("perm", new long[] { 0, 2, 3, 1 })); // [b, grid, grid, d]
        if (v.UseAbsPos) x = g.Node("Add", [x, "vision_encoder.pos_embed"]);

        for (int i = 0; i < v.NumHiddenLayers; i++)
        {
            string pre = $"vision_encoder.layers.{i}.";
            string h = LayerNorm(g, x, pre + "layer_norm1", v.LayerNormEps);
            int window = v.WindowOf(i);
            int padded = grid, blocks = 1, side = grid;
            if (window > 0)
            {
                // Windows tile a grid padded with zeros up to a multiple of the window (after the norm, as SAM pads).
                int pad = (window - grid % window) % window;
                padded = grid + pad;
                blocks = padded / window;
                side = window;
                if (pad > 0) h = g.Node("Pad", [h, g.ConstInt64([0, 0, 0, 0, 0, pad, pad, 0])]);
                h = g.Node("Reshape", [h, g.ConstInt64([-1, blocks, window, blocks, window, d])]);
                h = g.Node("Transpose", [h], ("perm", new long[] { 0, 1, 3, 2, 4, 5 }));
                h = g.Node("Reshape", [h, g.ConstInt64([-1, window, window, d])]);
            }
            h = VisionAttention(g, h, pre + "attn.", side, v);
            if (window > 0)
            {
                h = g.Node("Reshape", [h, g.ConstInt64([-1, blocks, blocks, window, window, d])]);
                h = g.Node("Transpose", [h], ("perm", new long[] { 0, 1, 3, 2, 4, 5 }));
                h = g.Node("Reshape", [h, g.ConstInt64([-1, padded, padded, d])]);
                if (padded > grid)
                    h = g.Node("Slice", [h, g.ConstInt64([0, 0]), g.ConstInt64([grid, grid]), g.ConstInt64([1, 2])]);
            }
            x = g.Node("Add", [x, h]);
            string n2 = g.Node("Reshape", [LayerNorm(g, x, pre + "layer_norm2", v.LayerNormEps), g.ConstInt64([-1, d])]);
            string mlp = Linear(g, Gelu(g, Linear(g, n2, pre + "mlp.lin1")), pre + "mlp.lin2");
            x = g.Node("Add", [x, g.Node("Reshape", [mlp, g.Node("Shape", [x])])]);
        }

        string y = g.Node("Transpose", [x], ("perm", new long[] { 0, 3, 1, 2 }));
        y = g.Node("Conv", [y, "vision_encoder.neck.conv1.weight"], ("kernel_shape", new long[] { 1, 1 }));
        y = ChannelNorm(g, y, "vision_encoder.neck.layer_norm1");
        y = g.Node("Conv", [y, "vision_encoder.neck.conv2.weight"], ("kernel_shape", new long[] { 3, 3 }), ("pads", new long[] { 1, 1, 1, 1 }));
        y = ChannelNorm(g, y, "vision_encoder.neck.layer_norm2");
        g.Output(y, ImageEmbeddings, F32, "batch", v.OutputChannels, grid, grid);
        return g;
    }

    /// <summary>
    /// Multi-head self-attention over [n, side, side, d] with decomposed relative position biases:
    /// score(q, k) = (q·scale)·k + q·Rh[qh − kh] + q·Rw[qw − kw] (the bias terms use the unscaled query).
    /// </summary>
    private static string VisionAttention(OnnxGraph g, string x, string pre, int side, SamVisionConfig v)
    {
        int d = v.HiddenSize, nh = v.NumAttentionHeads, hd = v.HeadDim, len = side * side;
        string qkv = g.Node("Gemm", v.QkvBias ? [g.Node("Reshape", [x, g.ConstInt64([-1, d])]), pre + "qkv.weight", pre + "qkv.bias"]
                                              : [g.Node("Reshape", [x, g.ConstInt64([-1, d])]), pre + "qkv.weight"], ("transB", 1L));
        // Output features are ordered (q|k|v, head, channel).
        qkv = g.Node("Transpose", [g.Node("Reshape", [qkv, g.ConstInt64([-1, len, 3, nh, hd])])], ("perm", new long[] { 2, 0, 3, 1, 4 }));
        string q = g.Node("Gather", [qkv, g.ConstInt64([0], scalar: true)], ("axis", 0L)); // [n, nh, len, hd]
        string k = g.Node("Gather", [qkv, g.ConstInt64([1], scalar: true)], ("axis", 0L));
        string val = g.Node("Gather", [qkv, g.ConstInt64([2], scalar: true)], ("axis", 0L));
        string scores = g.Node("MatMul", [g.Node("Mul", [q, g.ConstScalar(1.0 / Math.Sqrt(hd), F32)]), g.Node("Transpose", [k], ("perm", new long[] { 0, 1, 3, 2 }))]);
        if (v.UseRelPos)
        {
            // Table row for (query index a, key index b) along one axis is a − b + side − 1.
            var index = new long[side * side];
            for (int a = 0; a < side; a++) for (int b = 0; b < side; b++) index[a * side + b] = a - b + side - 1;
            string idx = g.ConstInt64(index);
            string Table(string name) => g.Node("Transpose", [g.Node("Reshape", [g.Node("Gather", [name, idx], ("axis", 0L)), g.ConstInt64([side, side, hd])])], ("perm", new long[] { 0, 2, 1 }));
            string rhT = Table(pre + "rel_pos_h"); // [qh, hd, kh]
            string rwT = Table(pre + "rel_pos_w"); // [qw, hd, kw]
            string q5 = g.Node("Reshape", [q, g.ConstInt64([-1, nh, side, side, hd])]); // [n, nh, qh, qw, hd]
            string relH = g.Node("MatMul", [q5, rhT]); // [n, nh, qh, qw, kh], batched over qh
            string q5t = g.Node("Transpose", [q5], ("perm", new long[] { 0, 1, 3, 2, 4 }));
            string relW = g.Node("Transpose", [g.Node("MatMul", [q5t, rwT])], ("perm", new long[] { 0, 1, 3, 2, 4 })); // [n, nh, qh, qw, kw]
            string s6 = g.Node("Reshape", [scores, g.ConstInt64([-1, nh, side, side, side, side])]);
            s6 = g.Node("Add", [g.Node("Add", [s6, g.Node("Unsqueeze", [relH, g.ConstInt64([5])])]), g.Node("Unsqueeze", [relW, g.ConstInt64([4])])]);
            scores = g.Node("Reshape", [s6, g.ConstInt64([-1, nh, len, len])]);
        }
        string probs = g.Node("Softmax", [scores], ("axis", -1L));
        string ctx = g.Node("Transpose", [g.Node("MatMul", [probs, val])], ("perm", new long[] { 0, 2, 1, 3 }));
        string outp = Linear(g, g.Node("Reshape", [ctx, g.ConstInt64([-1, d])]), pre + "proj");
        return g.Node("Reshape", [outp, g.ConstInt64([-1, side, side, d])]);
    }

    /// <summary>The prompt encoder + mask decoder graph for one image and one prompt.</summary>
    public static OnnxGraph BuildDecoder(SamConfig config)
    {
        var m = config.MaskDecoder;
        var g = new OnnxGraph("sam_mask_decoder", Opset);
        int c = m.HiddenSize, grid = config.Vision.GridSize, hw = grid * grid, tokens = m.NumMaskTokens;
        string image = g.Input(ImageEmbeddings, F32, 1, c, grid, grid);
        string coords = g.Input(PointCoords, F32, 1, "points", 2);
        string labels = g.Input(PointLabels, F32, 1, "points");
        foreach (var w in SamWeightLayout.Decoder(config)) g.Input(w.Name, F32, w.Shape.Select(x => (OnnxDim)x).ToArray());

        // Positional encoding of every embedding cell at its centre, in [0, 1]².
        var centres = new float[hw * 2];
        for (int i = 0; i < grid; i++)
            for (int j = 0; j < grid; j++)
            {
                centres[(i * grid + j) * 2] = (float)((j + 0.5) / grid);
                centres[(i * grid + j) * 2 + 1] = (float)((i + 0.5) / grid);
            }
        string imagePe = g.Node("Unsqueeze", [Fourier(g, g.ConstFloat(centres, [hw, 2])), g.ConstInt64([0])]); // [1, hw, c]

        // Sparse prompt embeddings: Fourier features of pixel centres, then the label's learned embedding.
        string unit = g.Node("Div", [g.Node("Add", [coords, g.ConstScalar(0.5, F32)]), g.ConstScalar(config.PromptEncoder.ImageSize, F32)]);
        string sparse = Fourier(g, unit); // [1, points, c]
        string label3 = g.Node("Unsqueeze", [labels, g.ConstInt64([2])]);
        sparse = g.Node("Where", [g.Node("Equal", [label3, g.ConstScalar(-1, F32)]), "prompt_encoder.not_a_point_embed.weight", sparse]);
        for (int k = 0; k < config.PromptEncoder.NumPointEmbeddings; k++)
            sparse = g.Node("Where", [g.Node("Equal", [label3, g.ConstScalar(k, F32)]), g.Node("Add", [sparse, $"prompt_encoder.point_embed.{k}.weight"]), sparse]);

        string output = g.Node("Unsqueeze", [g.Node("Concat", ["mask_decoder.iou_token.weight", "mask_decoder.mask_tokens.weight"], ("axis", 0L)), g.ConstInt64([0])]);
        string queryPe = g.Node("Concat", [output, sparse], ("axis", 1L)); // [1, tokens, c]
        string dense = g.Node("Reshape", ["prompt_encoder.no_mask_embed.weight", g.ConstInt64([1, c, 1, 1])]);
        string keys = g.Node("Transpose", [g.Node("Reshape", [g.Node("Add", [image, dense]), g.ConstInt64([1, c, hw])])], ("perm", new long[] { 0, 2, 1 }));
        string queries = queryPe;

        int cross = c / m.AttentionDownsampleRate;
        for (int i = 0; i < m.NumHiddenLayers; i++)
        {
            string pre = $"mask_decoder.transformer.layers.{i}.";
            if (i == 0)
                queries = TokenAttention(g, queries, queries, queries, pre + "self_attn", c, m);
            else
            {
                string qq = g.Node("Add", [queries, queryPe]);
                queries = g.Node("Add", [queries, TokenAttention(g, qq, qq, queries, pre + "self_attn", c, m)]);
            }
            queries = LayerNorm(g, queries, pre + "layer_norm1", m.LayerNormEps);
            string q = g.Node("Add", [queries, queryPe]);
            string k = g.Node("Add", [keys, imagePe]);
            queries = LayerNorm(g, g.Node("Add", [queries, TokenAttention(g, q, k, keys, pre + "cross_attn_token_to_image", cross, m)]), pre + "layer_norm2", m.LayerNormEps);
            string mlp = Linear(g, g.Node("Relu", [Linear(g, g.Node("Reshape", [queries, g.ConstInt64([-1, c])]), pre + "mlp.lin1")]), pre + "mlp.lin2");
            queries = LayerNorm(g, g.Node("Add", [queries, g.Node("Reshape", [mlp, g.ConstInt64([1, -1, c])])]), pre + "layer_norm3", m.LayerNormEps);
            q = g.Node("Add", [queries, queryPe]);
            k = g.Node("Add", [keys, imagePe]);
            keys = LayerNorm(g, g.Node("Add", [keys, TokenAttention(g, k, q, queries, pre + "cross_attn_image_to_token", cross, m)]), pre + "layer_norm4", m.LayerNormEps);
        }
        {
            string q = g.Node("Add", [queries, queryPe]);
            string k = g.Node("Add", [keys, imagePe]);
            queries = g.Node("Add", [queries, TokenAttention(g, q, k, keys, "mask_decoder.transformer.final_attn_token_to_image", cross, m)]);
            queries = LayerNorm(g, queries, "mask_decoder.transformer.layer_norm_final_attn", FinalAttentionNormEps);
        }

        // Upscale the image tokens 4× and let each mask token's hypernetwork weigh the channels.
        string up = g.Node("Reshape", [g.Node("Transpose", [keys], ("perm", new long[] { 0, 2, 1 })), g.ConstInt64([1, c, grid, grid])]);
        up = g.Node("ConvTranspose", [up, "mask_decoder.upscale_conv1.weight", "mask_decoder.upscale_conv1.bias"], ("kernel_shape", new long[] { 2, 2 }), ("strides", new long[] { 2, 2 }));
        up = Gelu(g, ChannelNorm(g, up, "mask_decoder.upscale_layer_norm"));
        up = g.Node("ConvTranspose", [up, "mask_decoder.upscale_conv2.weight", "mask_decoder.upscale_conv2.bias"], ("kernel_shape", new long[] { 2, 2 }), ("strides", new long[] { 2, 2 }));
        up = g.Node("Reshape", [Gelu(g, up), g.ConstInt64([c / 8, 16L * hw])]);
        var hyper = new string[tokens];
        for (int t = 0; t < tokens; t++)
        {
            string token = g.Node("Gather", [queries, g.ConstInt64([1 + t], scalar: true)], ("axis", 1L)); // [1, c]
            string pre = $"mask_decoder.output_hypernetworks_mlps.{t}.";
            string h = g.Node("Relu", [Linear(g, token, pre + "proj_in")]);
            h = g.Node("Relu", [Linear(g, h, pre + "layers.0")]);
            hyper[t] = Linear(g, h, pre + "proj_out"); // [1, c/8]
        }
        string masks = g.Node("MatMul", [g.Node("Concat", hyper, ("axis", 0L)), up]);
        g.Output(g.Node("Reshape", [masks, g.ConstInt64([1, tokens, 4 * grid, 4 * grid])]), LowResMasks, F32, 1, tokens, 4 * grid, 4 * grid);

        string iou = g.Node("Relu", [Linear(g, g.Node("Gather", [queries, g.ConstInt64([0], scalar: true)], ("axis", 1L)), "mask_decoder.iou_prediction_head.proj_in")]);
        for (int k = 0; k < m.IouHeadDepth - 2; k++) iou = g.Node("Relu", [Linear(g, iou, $"mask_decoder.iou_prediction_head.layers.{k}")]);
        g.Output(Linear(g, iou, "mask_decoder.iou_prediction_head.proj_out"), IouPredictions, F32, 1, tokens);
        return g;
    }

    /// <summary>Attention of the two-way transformer on [1, n, c] tokens, projecting to <paramref name="inner"/> channels.</summary>
    private static string TokenAttention(OnnxGraph g, string query, string key, string value, string pre, int inner, SamMaskDecoderConfig m)
    {
        int c = m.HiddenSize, nh = m.NumAttentionHeads, hd = inner / nh;
        string rows = g.ConstInt64([-1, c]);
        string heads = g.ConstInt64([1, -1, nh, hd]);
        string Heads(string x, string proj) =>
            g.Node("Transpose", [g.Node("Reshape", [Linear(g, g.Node("Reshape", [x, rows]), $"{pre}.{proj}"), heads])], ("perm", new long[] { 0, 2, 1, 3 }));
        string q = Heads(query, "q_proj"), k = Heads(key, "k_proj"), v = Heads(value, "v_proj");
        string scores = g.Node("Mul", [g.Node("MatMul", [q, g.Node("Transpose", [k], ("perm", new long[] { 0, 1, 3, 2 }))]), g.ConstScalar(1.0 / Math.Sqrt(hd), F32)]);
        string ctx = g.Node("Transpose", [g.Node("MatMul", [g.Node("Softmax", [scores], ("axis", -1L)), v])], ("perm", new long[] { 0, 2, 1, 3 }));
        string outp = Linear(g, g.Node("Reshape", [ctx, g.ConstInt64([-1, inner])]), $"{pre}.out_proj");
        return g.Node("Reshape", [outp, g.ConstInt64([1, -1, c])]);
    }

    /// <summary>Random Fourier features of coordinates in [0, 1]² ([..., 2] → [..., 2·num_pos_feats]): sin and cos of 2π·(2x − 1)·P.</summary>
    private static string Fourier(OnnxGraph g, string unitCoords)
    {
        string centred = g.Node("Sub", [g.Node("Mul", [unitCoords, g.ConstScalar(2.0, F32)]), g.ConstScalar(1.0, F32)]);
        string proj = g.Node("Mul", [g.Node("MatMul", [centred, SamWeightLayout.PositionalEmbedding]), g.ConstScalar(2 * Math.PI, F32)]);
        return g.Node("Concat", [g.Node("Sin", [proj]), g.Node("Cos", [proj])], ("axis", -1L));
    }

    /// <summary>x [rows, in] · Wᵀ + b with W [out, in] as stored by PyTorch.</summary>
    private static string Linear(OnnxGraph g, string x, string prefix) => g.Node("Gemm", [x, prefix + ".weight", prefix + ".bias"], ("transB", 1L));

    /// <summary>LayerNorm over the last axis.</summary>
    private static string LayerNorm(OnnxGraph g, string x, string prefix, double eps) =>
        g.Node("LayerNormalization", [x, prefix + ".weight", prefix + ".bias"], ("axis", -1L), ("epsilon", (float)eps));

    /// <summary>LayerNorm over the channel axis of [b, c, h, w] (transformers' channels_first SamLayerNorm).</summary>
    private static string ChannelNorm(OnnxGraph g, string x, string prefix)
    {
        string mean = g.Node("ReduceMean", [x], ("axes", new long[] { 1 }), ("keepdims", 1L));
        string centred = g.Node("Sub", [x, mean]);
        string variance = g.Node("ReduceMean", [g.Node("Mul", [centred, centred])], ("axes", new long[] { 1 }), ("keepdims", 1L));
        string normed = g.Node("Div", [centred, g.Node("Sqrt", [g.Node("Add", [variance, g.ConstScalar(ChannelNormEps, F32)])])]);
        string axes = g.ConstInt64([1, 2]);
        return g.Node("Add", [g.Node("Mul", [normed, g.Node("Unsqueeze", [prefix + ".weight", axes])]), g.Node("Unsqueeze", [prefix + ".bias", axes])]);
    }

    /// <summary>Exact GELU: x · Φ(x) = 0.5·x·(1 + erf(x/√2)).</summary>
    private static string Gelu(OnnxGraph g, string x)
    {
        string erf = g.Node("Erf", [g.Node("Mul", [x, g.ConstScalar(1.0 / Math.Sqrt(2.0), F32)])]);
        return g.Node("Mul", [g.Node("Mul", [x, g.ConstScalar(0.5, F32)]), g.Node("Add", [erf, g.ConstScalar(1.0, F32)])]);
    }
}
