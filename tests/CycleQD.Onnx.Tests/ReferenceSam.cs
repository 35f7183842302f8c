using CycleQD.Onnx.Sam;

namespace CycleQD.Onnx.Tests;

/// <summary>
/// A float64 SAM forward written from the model's definition with plain loops (no graph code):
/// ViT image encoder with windowed/global attention and decomposed relative positions, neck,
/// prompt encoder and two-way mask decoder. Slow, for tiny models only.
/// </summary>
internal sealed class ReferenceSam(SamConfig config, IReadOnlyDictionary<string, float[]> weights)
{
    private double W(string name, int i) => weights[name][i];

    // ---------------- image encoder ----------------

    /// <summary>Image embedding [C, grid, grid] of a [channels, image, image] image.</summary>
    public double[] Encode(float[] pixels)
    {
        var v = config.Vision;
        int s = v.ImageSize, p = v.PatchSize, gsz = v.GridSize, d = v.HiddenSize, nc = v.NumChannels;
        var x = new double[gsz * gsz * d]; // [gi, gj, d]
        for (int gi = 0; gi < gsz; gi++)
            for (int gj = 0; gj < gsz; gj++)
                for (int o = 0; o < d; o++)
                {
                    double acc = W("vision_encoder.patch_embed.projection.bias", o);
                    for (int ci = 0; ci < nc; ci++)
                        for (int ky = 0; ky < p; ky++)
                            for (int kx = 0; kx < p; kx++)
                                acc += W("vision_encoder.patch_embed.projection.weight", ((o * nc + ci) * p + ky) * p + kx)
                                       * pixels[(ci * s + gi * p + ky) * s + gj * p + kx];
                    if (v.UseAbsPos) acc += W("vision_encoder.pos_embed", (gi * gsz + gj) * d + o);
                    x[(gi * gsz + gj) * d + o] = acc;
                }

        for (int layer = 0; layer < v.NumHiddenLayers; layer++)
        {
            string pre = $"vision_encoder.layers.{layer}.";
            var h = new double[x.Length];
            for (int t = 0; t < gsz * gsz; t++) LayerNorm(x, t * d, d, pre + "layer_norm1", v.LayerNormEps, h, t * d);
            int window = v.WindowOf(layer);
            var attn = new double[x.Length];
            if (window == 0)
                attn = Attention2d(h, gsz, pre + "attn.");
            else
            {
                int padded = (gsz + window - 1) / window * window;
                for (int bi = 0; bi < padded / window; bi++)
                    for (int bj = 0; bj < padded / window; bj++)
                    {
                        var win = new double[window * window * d]; // zeros where the window hangs over the padding
                        for (int a = 0; a < window; a++)
                            for (int b = 0; b < window; b++)
                            {
                                int gi = bi * window + a, gj = bj * window + b;
                                if (gi < gsz && gj < gsz) Array.Copy(h, (gi * gsz + gj) * d, win, (a * window + b) * d, d);
                            }
                        var o = Attention2d(win, window, pre + "attn.");
                        for (int a = 0; a < window; a++)
                            for (int b = 0; b < window; b++)
                            {
                                int gi = bi * window + a, gj = bj * window + b;
                                if (gi < gsz && gj < gsz) Array.Copy(o, (a * window + b) * d, attn, (gi * gsz + gj) * d, d);
                            }
                    }
            }
            for (int i = 0; i < x.Length; i++) x[i] += attn[i];
            for (int t = 0; t < gsz * gsz; t++)
            {
                var n = new double[d];
                LayerNorm(x, t * d, d, pre + "layer_norm2", v.LayerNormEps, n, 0);
                var hidden = Linear(n, pre + "mlp.lin1", d, v.MlpDim);
                for (int i = 0; i < hidden.Length; i++) hidden[i] = Gelu(hidden[i]);
                var outp = Linear(hidden, pre + "mlp.lin2", v.MlpDim, d);
                for (int i = 0; i < d; i++) x[t * d + i] += outp[i];
            }
        }

        // Neck, channels first.
        int c = v.OutputChannels, hw = gsz * gsz;
        var y = new double[c * hw];
        for (int o = 0; o < c; o++)
            for (int t = 0; t < hw; t++)
            {
                double acc = 0;
                for (int i = 0; i < d; i++) acc += W("vision_encoder.neck.conv1.weight", o * d + i) * x[t * d + i];
                y[o * hw + t] = acc;
            }
        ChannelNorm(y, c, hw, "vision_encoder.neck.layer_norm1");
        var z = new double[c * hw];
        for (int o = 0; o < c; o++)
            for (int i = 0; i < gsz; i++)
                for (int j = 0; j < gsz; j++)
                {
                    double acc = 0;
                    for (int ci = 0; ci < c; ci++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++)
                            {
                                int yi = i + ky - 1, yj = j + kx - 1;
                                if (yi < 0 || yj < 0 || yi >= gsz || yj >= gsz) continue;
                                acc += W("vision_encoder.neck.conv2.weight", ((o * c + ci) * 3 + ky) * 3 + kx) * y[ci * hw + yi * gsz + yj];
                            }
                    z[o * hw + i * gsz + j] = acc;
                }
        ChannelNorm(z, c, hw, "vision_encoder.neck.layer_norm2");
        return z;
    }

    /// <summary>Self-attention over side×side tokens [t, d] with decomposed relative position terms.</summary>
    private double[] Attention2d(double[] tokens, int side, string pre)
    {
        var v = config.Vision;
        int d = v.HiddenSize, nh = v.NumAttentionHeads, hd = v.HeadDim, len = side * side;
        var qkv = new double[len][];
        for (int t = 0; t < len; t++)
        {
            qkv[t] = new double[3 * d];
            for (int o = 0; o < 3 * d; o++)
            {
                double acc = v.QkvBias ? W(pre + "qkv.bias", o) : 0;
                for (int i = 0; i < d; i++) acc += W(pre + "qkv.weight", o * d + i) * tokens[t * d + i];
                qkv[t][o] = acc;
            }
        }
        var ctx = new double[len * d];
        double scale = 1.0 / Math.Sqrt(hd);
        for (int h = 0; h < nh; h++)
            for (int t = 0; t < len; t++)
            {
                int ti = t / side, tj = t % side;
                var scores = new double[len];
                for (int u = 0; u < len; u++)
                {
                    int ui = u / side, uj = u % side;
                    double dot = 0, relH = 0, relW = 0;
                    for (int c = 0; c < hd; c++)
                    {
                        double q = qkv[t][h * hd + c];
                        dot += q * qkv[u][d + h * hd + c];
                        if (v.UseRelPos)
                        {
                            relH += q * W(pre + "rel_pos_h", (ti - ui + side - 1) * hd + c);
                            relW += q * W(pre + "rel_pos_w", (tj - uj + side - 1) * hd + c);
                        }
                    }
                    scores[u] = dot * scale + relH + relW;
                }
                Softmax(scores);
                for (int c = 0; c < hd; c++)
                {
                    double acc = 0;
                    for (int u = 0; u < len; u++) acc += scores[u] * qkv[u][2 * d + h * hd + c];
                    ctx[t * d + h * hd + c] = acc;
                }
            }
        var result = new double[len * d];
        for (int t = 0; t < len; t++)
        {
            var row = Linear(ctx.AsSpan(t * d, d).ToArray(), pre + "proj", d, d);
            Array.Copy(row, 0, result, t * d, d);
        }
        return result;
    }

    // ---------------- prompt encoder + mask decoder ----------------

    /// <summary>All mask tokens' low-res logits [tokens, 4g, 4g] and IoU predictions [tokens].</summary>
    public (double[] Masks, double[] Iou) Decode(float[] embedding, SamPrompt prompt)
    {
        var m = config.MaskDecoder;
        int c = m.HiddenSize, gsz = config.Vision.GridSize, hw = gsz * gsz, tokens = m.NumMaskTokens;
        double size = config.PromptEncoder.ImageSize;

        // Sparse embeddings in SAM's order: points, a padding point when there is no box, box corners.
        var sparse = new List<double[]>();
        if (prompt.Points is { } pts)
        {
            for (int i = 0; i < pts.Length / 2; i++)
            {
                var e = Fourier((pts[2 * i] + 0.5) / size, (pts[2 * i + 1] + 0.5) / size);
                Add(e, $"prompt_encoder.point_embed.{prompt.PointLabels![i]}.weight");
                sparse.Add(e);
            }
            if (prompt.Box is null) sparse.Add(Row("prompt_encoder.not_a_point_embed.weight", 0, c));
        }
        if (prompt.Box is { } box)
        {
            for (int corner = 0; corner < 2; corner++)
            {
                var e = Fourier((box[2 * corner] + 0.5) / size, (box[2 * corner + 1] + 0.5) / size);
                Add(e, $"prompt_encoder.point_embed.{2 + corner}.weight");
                sparse.Add(e);
            }
        }
        var tokenList = new List<double[]> { Row("mask_decoder.iou_token.weight", 0, c) };
        for (int t = 0; t < tokens; t++) tokenList.Add(Row("mask_decoder.mask_tokens.weight", t, c));
        tokenList.AddRange(sparse);
        var pointPe = tokenList.Select(r => (double[])r.Clone()).ToArray();
        var queries = tokenList.Select(r => (double[])r.Clone()).ToArray();

        var keys = new double[hw][];
        var keyPe = new double[hw][];
        for (int i = 0; i < gsz; i++)
            for (int j = 0; j < gsz; j++)
            {
                int t = i * gsz + j;
                keys[t] = new double[c];
                for (int ch = 0; ch < c; ch++) keys[t][ch] = embedding[ch * hw + t] + W("prompt_encoder.no_mask_embed.weight", ch);
                keyPe[t] = Fourier((j + 0.5) / gsz, (i + 0.5) / gsz);
            }

        int cross = c / m.AttentionDownsampleRate;
        for (int layer = 0; layer < m.NumHiddenLayers; layer++)
        {
            string pre = $"mask_decoder.transformer.layers.{layer}.";
            if (layer == 0)
                queries = TokenAttention(queries, queries, queries, pre + "self_attn", c);
            else
            {
                var q = Plus(queries, pointPe);
                queries = Plus(queries, TokenAttention(q, q, queries, pre + "self_attn", c));
            }
            queries = Norm(queries, pre + "layer_norm1", m.LayerNormEps);
            queries = Norm(Plus(queries, TokenAttention(Plus(queries, pointPe), Plus(keys, keyPe), keys, pre + "cross_attn_token_to_image", cross)), pre + "layer_norm2", m.LayerNormEps);
            var mlp = queries.Select(r =>
            {
                var hidden = Linear(r, pre + "mlp.lin1", c, m.MlpDim);
                for (int i = 0; i < hidden.Length; i++) hidden[i] = Math.Max(0, hidden[i]);
                return Linear(hidden, pre + "mlp.lin2", m.MlpDim, c);
            }).ToArray();
            queries = Norm(Plus(queries, mlp), pre + "layer_norm3", m.LayerNormEps);
            keys = Norm(Plus(keys, TokenAttention(Plus(keys, keyPe), Plus(queries, pointPe), queries, pre + "cross_attn_image_to_token", cross)), pre + "layer_norm4", m.LayerNormEps);
        }
        queries = Plus(queries, TokenAttention(Plus(queries, pointPe), Plus(keys, keyPe), keys, "mask_decoder.transformer.final_attn_token_to_image", cross));
        queries = Norm(queries, "mask_decoder.transformer.layer_norm_final_attn", 1e-5);

        // Upscaling: two stride-2 2×2 transposed convolutions.
        var img = new double[c * hw];
        for (int t = 0; t < hw; t++) for (int ch = 0; ch < c; ch++) img[ch * hw + t] = keys[t][ch];
        var up1 = ConvTranspose2x2(img, c, c / 4, gsz, "mask_decoder.upscale_conv1");
        ChannelNorm(up1, c / 4, 4 * hw, "mask_decoder.upscale_layer_norm");
        for (int i = 0; i < up1.Length; i++) up1[i] = Gelu(up1[i]);
        var up2 = ConvTranspose2x2(up1, c / 4, c / 8, 2 * gsz, "mask_decoder.upscale_conv2");
        for (int i = 0; i < up2.Length; i++) up2[i] = Gelu(up2[i]);

        int plane = 16 * hw;
        var masks = new double[tokens * plane];
        for (int t = 0; t < tokens; t++)
        {
            string pre = $"mask_decoder.output_hypernetworks_mlps.{t}.";
            var h = Relu(Linear(queries[1 + t], pre + "proj_in", c, c));
            h = Relu(Linear(h, pre + "layers.0", c, c));
            var hyper = Linear(h, pre + "proj_out", c, c / 8);
            for (int px = 0; px < plane; px++)
            {
                double acc = 0;
                for (int ch = 0; ch < c / 8; ch++) acc += hyper[ch] * up2[ch * plane + px];
                masks[t * plane + px] = acc;
            }
        }
        int ih = m.IouHeadHiddenDim;
        var iou = Relu(Linear(queries[0], "mask_decoder.iou_prediction_head.proj_in", c, ih));
        for (int k = 0; k < m.IouHeadDepth - 2; k++) iou = Relu(Linear(iou, $"mask_decoder.iou_prediction_head.layers.{k}", ih, ih));
        return (masks, Linear(iou, "mask_decoder.iou_prediction_head.proj_out", ih, tokens));
    }

    private double[][] TokenAttention(double[][] q, double[][] k, double[][] v, string pre, int inner)
    {
        int c = config.MaskDecoder.HiddenSize, nh = config.MaskDecoder.NumAttentionHeads, hd = inner / nh;
        var qp = q.Select(r => Linear(r, pre + ".q_proj", c, inner)).ToArray();
        var kp = k.Select(r => Linear(r, pre + ".k_proj", c, inner)).ToArray();
        var vp = v.Select(r => Linear(r, pre + ".v_proj", c, inner)).ToArray();
        var result = new double[q.Length][];
        for (int t = 0; t < q.Length; t++)
        {
            var ctx = new double[inner];
            for (int h = 0; h < nh; h++)
            {
                var scores = new double[k.Length];
                for (int u = 0; u < k.Length; u++)
                {
                    double dot = 0;
                    for (int ch = 0; ch < hd; ch++) dot += qp[t][h * hd + ch] * kp[u][h * hd + ch];
                    scores[u] = dot / Math.Sqrt(hd);
                }
                Softmax(scores);
                for (int ch = 0; ch < hd; ch++)
                {
                    double acc = 0;
                    for (int u = 0; u < k.Length; u++) acc += scores[u] * vp[u][h * hd + ch];
                    ctx[h * hd + ch] = acc;
                }
            }
            result[t] = Linear(ctx, pre + ".out_proj", inner, c);
        }
        return result;
    }

    /// <summary>[inC, side, side] → [outC, 2side, 2side]; weight [inC, outC, 2, 2].</summary>
    private double[] ConvTranspose2x2(double[] x, int inC, int outC, int side, string pre)
    {
        int outSide = 2 * side;
        var y = new double[outC * outSide * outSide];
        for (int o = 0; o < outC; o++)
            for (int i = 0; i < outSide; i++)
                for (int j = 0; j < outSide; j++)
                {
                    double acc = W(pre + ".bias", o);
                    for (int ci = 0; ci < inC; ci++)
                        acc += x[(ci * side + i / 2) * side + j / 2] * W(pre + ".weight", ((ci * outC + o) * 2 + i % 2) * 2 + j % 2);
                    y[(o * outSide + i) * outSide + j] = acc;
                }
        return y;
    }

    /// <summary>sin/cos random Fourier features of a point in [0, 1]².</summary>
    private double[] Fourier(double x, double y)
    {
        int f = config.Vision.NumPosFeats;
        var e = new double[2 * f];
        for (int j = 0; j < f; j++)
        {
            double a = 2 * Math.PI * ((2 * x - 1) * W(SamWeightLayout.PositionalEmbedding, j) + (2 * y - 1) * W(SamWeightLayout.PositionalEmbedding, f + j));
            e[j] = Math.Sin(a);
            e[f + j] = Math.Cos(a);
        }
        return e;
    }

    // ---------------- primitives ----------------

    private double[] Row(string name, int row, int width)
    {
        var r = new double[width];
        for (int i = 0; i < width; i++) r[i] = W(name, row * width + i);
        return r;
    }

    private void Add(double[] x, string name) { for (int i = 0; i < x.Length; i++) x[i] += W(name, i); }

    private static double[][] Plus(double[][] a, double[][] b) => a.Select((r, t) => r.Select((x, i) => x + b[t][i]).ToArray()).ToArray();

    private double[][] Norm(double[][] rows, string pre, double eps) => rows.Select(r =>
    {
        var o = new double[r.Length];
        LayerNorm(r, 0, r.Length, pre, eps, o, 0);
        return o;
    }).ToArray();

    private double[] Linear(double[] x, string pre, int inF, int outF)
    {
        var y = new double[outF];
        for (int o = 0; o < outF; o++)
        {
            double acc = W(pre + ".bias", o);
            for (int i = 0; i < inF; i++) acc += W(pre + ".weight", o * inF + i) * x[i];
            y[o] = acc;
        }
        return y;
    }

    private void LayerNorm(double[] x, int offset, int n, string pre, double eps, double[] y, int yOffset)
    {
        double mean = 0, variance = 0;
        for (int i = 0; i < n; i++) mean += x[offset + i];
        mean /= n;
        for (int i = 0; i < n; i++) variance += (x[offset + i] - mean) * (x[offset + i] - mean);
        variance /= n;
        for (int i = 0; i < n; i++)
            y[yOffset + i] = (x[offset + i] - mean) / Math.Sqrt(variance + eps) * W(pre + ".weight", i) + W(pre + ".bias", i);
    }

    /// <summary>In place over the channel axis of [c, hw].</summary>
    private void ChannelNorm(double[] x, int c, int hw, string pre)
    {
        for (int t = 0; t < hw; t++)
        {
            double mean = 0, variance = 0;
            for (int ch = 0; ch < c; ch++) mean += x[ch * hw + t];
            mean /= c;
            for (int ch = 0; ch < c; ch++) variance += (x[ch * hw + t] - mean) * (x[ch * hw + t] - mean);
            variance /= c;
            for (int ch = 0; ch < c; ch++)
                x[ch * hw + t] = (x[ch * hw + t] - mean) / Math.Sqrt(variance + 1e-6) * W(pre + ".weight", ch) + W(pre + ".bias", ch);
        }
    }

    private static void Softmax(double[] s)
    {
        double max = s.Max(), sum = 0;
        for (int i = 0; i < s.Length; i++) { s[i] = Math.Exp(s[i] - max); sum += s[i]; }
        for (int i = 0; i < s.Length; i++) s[i] /= sum;
    }

    private static double[] Relu(double[] x) => x.Select(v => Math.Max(0, v)).ToArray();

    /// <summary>Exact GELU: 0.5·x·(1 + erf(x/√2)).</summary>
    public static double Gelu(double x) => 0.5 * x * (1 + Erf(x / Math.Sqrt(2)));

    /// <summary>erf to ~1e-15: Maclaurin series for |x| &lt; 3, else 1 − erfc by continued fraction.</summary>
    public static double Erf(double x)
    {
        double ax = Math.Abs(x);
        double r;
        if (ax < 3)
        {
            double term = ax, sum = ax, x2 = ax * ax;
            for (int n = 1; n < 200; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
            }
            r = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else
        {
            // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))) (Lentz-free backward evaluation).
            double f = ax;
            for (int k = 60; k >= 1; k--) f = ax + k / 2.0 / f;
            r = 1 - Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / f;
        }
        return x < 0 ? -r : r;
    }
}
