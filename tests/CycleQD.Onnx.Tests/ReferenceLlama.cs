using CycleQD.Tensors;

namespace CycleQD.Onnx.Tests;

/// <summary>
/// A plain float64 Llama forward pass written from the Hugging Face definition, independent of the
/// ONNX graph: one sequence, no cache, every position's logits.
/// </summary>
internal static class ReferenceLlama
{
    public static double[,] Forward(LlamaConfig c, IReadOnlyDictionary<string, float[]> w, int[] tokens)
    {
        int s = tokens.Length, h = c.HiddenSize, nh = c.NumAttentionHeads, kvh = c.NumKeyValueHeads, d = c.HeadDim, ff = c.IntermediateSize, v = c.VocabSize;
        var x = new double[s, h];
        var emb = w["model.embed_tokens.weight"];
        for (int t = 0; t < s; t++) for (int j = 0; j < h; j++) x[t, j] = emb[tokens[t] * h + j];
        double[] invFreq = InverseFrequencies(c);
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            var hn = RmsNorm(x, w[p + "input_layernorm.weight"], c.RmsNormEps);
            var q = Linear(hn, w[p + "self_attn.q_proj.weight"], nh * d);
            var k = Linear(hn, w[p + "self_attn.k_proj.weight"], kvh * d);
            var vv = Linear(hn, w[p + "self_attn.v_proj.weight"], kvh * d);
            Rope(q, nh, d, invFreq);
            Rope(k, kvh, d, invFreq);
            var ctx = new double[s, nh * d];
            for (int head = 0; head < nh; head++)
            {
                int kv = head / (nh / kvh);
                for (int i = 0; i < s; i++)
                {
                    var scores = new double[i + 1];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j <= i; j++)
                    {
                        double dot = 0;
                        for (int e = 0; e < d; e++) dot += q[i, head * d + e] * k[j, kv * d + e];
                        scores[j] = dot / Math.Sqrt(d);
                        max = Math.Max(max, scores[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j <= i; j++) { scores[j] = Math.Exp(scores[j] - max); sum += scores[j]; }
                    for (int j = 0; j <= i; j++)
                        for (int e = 0; e < d; e++) ctx[i, head * d + e] += scores[j] / sum * vv[j, kv * d + e];
                }
            }
            Add(x, Linear(ctx, w[p + "self_attn.o_proj.weight"], h));
            var hm = RmsNorm(x, w[p + "post_attention_layernorm.weight"], c.RmsNormEps);
            var gate = Linear(hm, w[p + "mlp.gate_proj.weight"], ff);
            var up = Linear(hm, w[p + "mlp.up_proj.weight"], ff);
            for (int t = 0; t < s; t++) for (int j = 0; j < ff; j++) gate[t, j] = gate[t, j] / (1 + Math.Exp(-gate[t, j])) * up[t, j];
            Add(x, Linear(gate, w[p + "mlp.down_proj.weight"], h));
        }
        var final = RmsNorm(x, w["model.norm.weight"], c.RmsNormEps);
        return Linear(final, c.TieWordEmbeddings ? emb : w["lm_head.weight"], v);
    }

    private static double[] InverseFrequencies(LlamaConfig c)
    {
        int half = c.HeadDim / 2;
        var f = new double[half];
        for (int i = 0; i < half; i++)
        {
            f[i] = Math.Pow(c.RopeTheta, -2.0 * i / c.HeadDim);
            if (c.RopeScaling is { Type: "llama3" } r)
            {
                double wavelen = 2 * Math.PI / f[i];
                double lowW = r.OriginalMaxPositionEmbeddings!.Value / r.LowFreqFactor!.Value;
                double highW = r.OriginalMaxPositionEmbeddings!.Value / r.HighFreqFactor!.Value;
                if (wavelen < highW) { }
                else if (wavelen > lowW) f[i] /= r.Factor;
                else
                {
                    double smooth = (r.OriginalMaxPositionEmbeddings!.Value / wavelen - r.LowFreqFactor!.Value) / (r.HighFreqFactor!.Value - r.LowFreqFactor!.Value);
                    f[i] = (1 - smooth) * f[i] / r.Factor + smooth * f[i];
                }
            }
        }
        return f;
    }

    private static void Rope(double[,] x, int heads, int d, double[] invFreq)
    {
        int half = d / 2;
        for (int t = 0; t < x.GetLength(0); t++)
            for (int head = 0; head < heads; head++)
                for (int i = 0; i < half; i++)
                {
                    double a = x[t, head * d + i], b = x[t, head * d + i + half];
                    double cos = Math.Cos(t * invFreq[i]), sin = Math.Sin(t * invFreq[i]);
                    x[t, head * d + i] = a * cos - b * sin;
                    x[t, head * d + i + half] = b * cos + a * sin;
                }
    }

    private static double[,] RmsNorm(double[,] x, float[] weight, double eps)
    {
        int s = x.GetLength(0), h = x.GetLength(1);
        var y = new double[s, h];
        for (int t = 0; t < s; t++)
        {
            double ms = 0;
            for (int j = 0; j < h; j++) ms += x[t, j] * x[t, j];
            double inv = 1 / Math.Sqrt(ms / h + eps);
            for (int j = 0; j < h; j++) y[t, j] = x[t, j] * inv * weight[j];
        }
        return y;
    }

    private static double[,] Linear(double[,] x, float[] weight, int outFeatures)
    {
        int s = x.GetLength(0), inFeatures = x.GetLength(1);
        var y = new double[s, outFeatures];
        for (int t = 0; t < s; t++)
            for (int o = 0; o < outFeatures; o++)
            {
                double acc = 0;
                for (int i = 0; i < inFeatures; i++) acc += x[t, i] * weight[o * inFeatures + i];
                y[t, o] = acc;
            }
        return y;
    }

    private static void Add(double[,] x, double[,] y)
    {
        for (int t = 0; t < x.GetLength(0); t++) for (int j = 0; j < x.GetLength(1); j++) x[t, j] += y[t, j];
    }
}
