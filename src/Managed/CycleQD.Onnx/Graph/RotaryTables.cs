using CycleQD.Tensors;

namespace CycleQD.Onnx.Graph;

/// <summary>
/// Rotary-embedding frequencies of a Llama config (rope_theta, and the "linear" or "llama3"
/// rope_scaling) and the cos/sin tables the graph takes per token, in Hugging Face's rotate_half
/// layout: entry j and j + head_dim/2 share frequency j.
/// </summary>
public sealed class RotaryTables
{
    private readonly double[] _invFreq;

    /// <summary>head_dim of the model.</summary>
    public int HeadDim { get; }

    /// <summary>Inverse frequencies (radians per position), head_dim/2 of them, after scaling.</summary>
    public IReadOnlyList<double> InverseFrequencies => _invFreq;

    /// <summary>Computes the frequencies of <paramref name="config"/>.</summary>
    public RotaryTables(LlamaConfig config)
    {
        HeadDim = config.HeadDim;
        int half = HeadDim / 2;
        _invFreq = new double[half];
        for (int i = 0; i < half; i++) _invFreq[i] = 1.0 / Math.Pow(config.RopeTheta, 2.0 * i / HeadDim);
        var s = config.RopeScaling;
        if (s is null || s.Type == "default") return;
        if (s.Type == "linear")
        {
            for (int i = 0; i < half; i++) _invFreq[i] /= s.Factor;
            return;
        }
        // "llama3": long wavelengths are divided by the factor, short ones kept, and the band between
        // is interpolated smoothly (transformers' _compute_llama3_parameters).
        double oldLen = s.OriginalMaxPositionEmbeddings!.Value, low = s.LowFreqFactor!.Value, high = s.HighFreqFactor!.Value;
        double lowWavelen = oldLen / low, highWavelen = oldLen / high;
        for (int i = 0; i < half; i++)
        {
            double f = _invFreq[i], wavelen = 2 * Math.PI / f;
            if (wavelen > lowWavelen) _invFreq[i] = f / s.Factor;
            else if (wavelen >= highWavelen)
            {
                double smooth = (oldLen / wavelen - low) / (high - low);
                _invFreq[i] = (1 - smooth) * f / s.Factor + smooth * f;
            }
        }
    }

    /// <summary>Rejects rope_scaling types the engine does not implement, or llama3 scaling missing a field.</summary>
    public static void ValidateScaling(LlamaConfig config, string configPath)
    {
        var s = config.RopeScaling;
        if (s is null || s.Type is "default" or "linear") return;
        if (s.Type != "llama3")
            throw new TensorFormatException(configPath, null, $"rope_scaling type \"{s.Type}\" is not supported (supported: linear, llama3)");
        if (s.LowFreqFactor is null || s.HighFreqFactor is null || s.OriginalMaxPositionEmbeddings is null)
            throw new TensorFormatException(configPath, null, "rope_scaling llama3 needs low_freq_factor, high_freq_factor and original_max_position_embeddings");
    }

    /// <summary>Writes cos and sin of every position into row-major [positions.Length, head_dim] buffers.</summary>
    public void Fill(ReadOnlySpan<long> positions, Span<float> cos, Span<float> sin)
    {
        int d = HeadDim, half = d / 2;
        for (int p = 0; p < positions.Length; p++)
        {
            var c = cos.Slice(p * d, d);
            var s = sin.Slice(p * d, d);
            for (int i = 0; i < half; i++)
            {
                double angle = positions[p] * _invFreq[i];
                c[i] = c[i + half] = (float)Math.Cos(angle);
                s[i] = s[i + half] = (float)Math.Sin(angle);
            }
        }
    }
}
