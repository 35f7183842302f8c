using CycleQD.Onnx.Graph;
using CycleQD.Tensors;

namespace CycleQD.Onnx.Tests;

/// <summary>Small random Llama configs and weights for graph tests.</summary>
internal static class TinyLlama
{
    /// <summary>4 attention heads of <paramref name="headDim"/> (8: the fused graph's RotaryEmbedding operators; 16: the rotary inside GroupQueryAttention).</summary>
    public static LlamaConfig Config(bool tied, RopeScaling? scaling = null, int headDim = 8) => new()
    {
        ModelType = "llama",
        HiddenSize = 4 * headDim,
        IntermediateSize = 48,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        VocabSize = 61,
        HeadDim = headDim,
        RmsNormEps = 1e-5,
        RopeTheta = 500.0,
        RopeScaling = scaling,
        TieWordEmbeddings = tied,
        MaxPositionEmbeddings = 64,
    };

    public static RopeScaling Llama3Scaling => new("llama3", 4.0, 1.0, 4.0, 16);

    /// <summary>Random weights: norms near 1, matrices with entries of order 1/sqrt(fan-in).</summary>
    public static Dictionary<string, float[]> Weights(LlamaConfig c, int seed)
    {
        var rng = new Random(seed);
        var result = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var spec in LlamaWeightLayout.For(c))
        {
            long n = spec.Shape.Aggregate(1L, (a, b) => a * b);
            var data = new float[n];
            bool norm = spec.Shape.Length == 1;
            double scale = norm ? 0.1 : 1.5 / Math.Sqrt(spec.Shape[^1]);
            for (int i = 0; i < n; i++) data[i] = (float)((norm ? 1.0 : 0.0) + scale * (rng.NextDouble() * 2 - 1));
            result[spec.Name] = data;
        }
        return result;
    }

    public static double RelativeError(ReadOnlySpan<float> actual, IEnumerable<double> expected)
    {
        double num = 0, den = 0;
        int i = 0;
        foreach (double e in expected)
        {
            double a = actual[i++];
            num += (a - e) * (a - e);
            den += e * e;
        }
        Assert.Equal(actual.Length, i);
        return Math.Sqrt(num / den);
    }

    public static IEnumerable<double> Rows(double[,] m, int from, int count)
    {
        for (int r = from; r < from + count; r++) for (int j = 0; j < m.GetLength(1); j++) yield return m[r, j];
    }
}
