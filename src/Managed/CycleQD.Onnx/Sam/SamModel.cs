using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Tensors;
using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Sam;

/// <summary>
/// A Hugging Face SamModel folder opened for inference on ONNX Runtime: the image-encoder and the
/// prompt + mask decoder sessions (built once per architecture; weights are graph inputs) and the
/// folder's weights, bound zero-copy from the memory-mapped safetensors file when stored as F32
/// (F16/BF16 are converted once at load). Other weights of the same architecture (a merged
/// candidate, an expert) run on the same sessions through <see cref="WithWeights"/>. Owns all of it.
/// </summary>
public sealed class SamModel : ISamPredictor
{
    private readonly SamSessions _sessions;
    private readonly SafetensorsModel _file;
    private readonly SamPredictor _own;

    /// <summary>The architecture.</summary>
    public SamConfig Config => _sessions.Config;

    /// <summary>The folder the model came from.</summary>
    public string Directory { get; }

    /// <summary>The sessions, shared by every weight set bound through <see cref="WithWeights"/>.</summary>
    public SamSessions Sessions => _sessions;

    /// <inheritdoc />
    public int ImageSize => Config.Vision.ImageSize;

    // On CUDA: made the device copy of the checkpoint's weights.
    private readonly DevicePlacement? _placement;

    private SamModel(string directory, SamSessions sessions, SafetensorsModel file, LlamaWeights weights, DevicePlacement? placement)
    {
        _placement = placement;
        Directory = directory;
        _sessions = sessions;
        _file = file;
        _own = new SamPredictor(sessions, weights, ownsWeights: true);
    }

    /// <summary>Opens <paramref name="directory"/>: config.json and model.safetensors (or shards), every tensor checked before the sessions are built.</summary>
    /// <param name="directory">The SamModel folder.</param>
    /// <param name="intraOpThreads">CPU threads per operator (0 = ONNX Runtime's default).</param>
    /// <param name="device">Execution provider of the sessions.</param>
    /// <param name="cudaDevice">The GPU (CUDA ordinal) of the CUDA provider.</param>
    /// <exception cref="TensorFormatException">missing or invalid config.json (the field named), missing weights file, a missing, misshapen or unexpected tensor (named with its file).</exception>
    /// <exception cref="ExecutionProviderUnavailableException">the CUDA provider cannot load (names what is missing).</exception>
    public static SamModel Open(string directory, int intraOpThreads = 0, InferenceDevice device = InferenceDevice.Cpu, int cudaDevice = 0)
    {
        if (!System.IO.Directory.Exists(directory)) throw new TensorFormatException(directory, null, "model folder not found");
        var config = SamConfig.Load(Path.Combine(directory, "config.json"));
        var file = SafetensorsModel.Open(directory);
        LlamaWeights? weights = null;
        SamSessions? sessions = null;
        DevicePlacement? placement = null;
        try
        {
            weights = BindWeights(file, config);
            sessions = new SamSessions(config, intraOpThreads, device, cudaDevice);
            if (device == InferenceDevice.Cuda)
            {
                // Host weights bound to a CUDA session would be copied to the GPU on every run.
                placement = new DevicePlacement(device, cudaDevice);
                var onDevice = weights.CopyTo(placement, SamWeightLayout.Encoder(config).Concat(SamWeightLayout.Decoder(config)).ToList());
                weights.Dispose();
                weights = onDevice;
            }
            return new SamModel(directory, sessions, file, weights, placement);
        }
        catch
        {
            sessions?.Dispose();
            weights?.Dispose();
            placement?.Dispose();
            file.Dispose();
            throw;
        }
    }

    /// <summary>The graphs' tensors bound from an opened checkpoint of <paramref name="config"/> (it must outlive the result).</summary>
    /// <exception cref="TensorFormatException">a tensor is missing, misshapen, of a non-float type, or not part of SamModel.</exception>
    public static LlamaWeights BindWeights(SafetensorsModel file, SamConfig config)
    {
        var layout = SamWeightLayout.Encoder(config).Concat(SamWeightLayout.Decoder(config)).ToList();
        var known = new HashSet<string>(SamWeightLayout.Unused(config).Select(s => s.Name), StringComparer.Ordinal) { SamWeightLayout.TiedPositionalEmbedding };
        return LlamaWeights.FromSafetensors(file, layout, "a sam model with this config.json", OnnxElementType.Float, known.Contains,
            _ => "is not part of SamModel for this config.json (the graphs would run without it)");
    }

    /// <summary>
    /// A predictor over these sessions for another weight set of this architecture (e.g. a merged
    /// candidate), float32 arrays by tensor name as in <see cref="SamWeightLayout"/>. The arrays are
    /// pinned, not copied, for the predictor's lifetime: writing into them changes its next run.
    /// Dispose the predictor before this model.
    /// </summary>
    /// <exception cref="TensorFormatException">a tensor is missing or has the wrong element count.</exception>
    public ISamPredictor WithWeights(IReadOnlyDictionary<string, float[]> tensors, string source)
    {
        var layout = SamWeightLayout.Encoder(Config).Concat(SamWeightLayout.Decoder(Config)).ToList();
        return new SamPredictor(_sessions, LlamaWeights.FromArrays(layout, tensors, source), ownsWeights: true);
    }

    /// <summary>
    /// A predictor over these sessions for a float32 weight set that lives where the sessions run
    /// (host memory on the CPU provider, device memory of the session's GPU on the CUDA provider):
    /// address and byte length per tensor name, bound in place. The caller keeps the memory alive and
    /// unchanged while the predictor runs. Dispose the predictor before this model.
    /// </summary>
    /// <exception cref="TensorFormatException">a tensor is missing or has the wrong byte length.</exception>
    public ISamPredictor WithWeightsInMemory(IReadOnlyDictionary<string, (nint Pointer, long Bytes)> tensors, string source)
    {
        var layout = SamWeightLayout.Encoder(Config).Concat(SamWeightLayout.Decoder(Config)).ToList();
        var weights = _sessions.Device == InferenceDevice.Cuda
            ? LlamaWeights.FromCudaMemory(layout, tensors, OnnxElementType.Float, _sessions.CudaDevice, source)
            : LlamaWeights.FromHostMemory(layout, tensors, OnnxElementType.Float, source);
        return new SamPredictor(_sessions, weights, ownsWeights: true);
    }

    /// <summary>Execution provider of the sessions.</summary>
    public InferenceDevice Device => _sessions.Device;

    /// <summary>The GPU (CUDA ordinal) of the CUDA provider; 0 on the CPU.</summary>
    public int CudaDevice => _sessions.CudaDevice;

    /// <inheritdoc />
    public float[] EncodeImage(float[] pixels) => _own.EncodeImage(pixels);

    /// <inheritdoc />
    public SamMaskOutput Decode(float[] imageEmbedding, SamPrompt prompt, bool multimask) => _own.Decode(imageEmbedding, prompt, multimask);

    /// <inheritdoc />
    public void Dispose()
    {
        _own.Dispose();
        _sessions.Dispose();
        _placement?.Dispose();
        _file.Dispose();
    }
}

/// <summary>One weight set on shared <see cref="SamSessions"/>.</summary>
internal sealed class SamPredictor(SamSessions sessions, LlamaWeights weights, bool ownsWeights) : ISamPredictor
{
    public int ImageSize => sessions.Config.Vision.ImageSize;

    public float[] EncodeImage(float[] pixels) => sessions.Encode(pixels, weights);

    public SamMaskOutput Decode(float[] imageEmbedding, SamPrompt prompt, bool multimask) => sessions.Decode(imageEmbedding, prompt, multimask, weights);

    public void Dispose()
    {
        if (ownsWeights) weights.Dispose();
    }
}

/// <summary>
/// The image-encoder and mask-decoder sessions of one SAM architecture, on the CPU or the CUDA provider. The
/// weights are graph inputs bound per call, so any <see cref="LlamaWeights"/> holding the
/// <see cref="SamWeightLayout.Encoder"/> and <see cref="SamWeightLayout.Decoder"/> tensors runs here.
/// Runs of one session are serialized.
/// </summary>
public sealed class SamSessions : IDisposable
{
    private readonly InferenceSession _encoder;
    private readonly InferenceSession _decoder;
    private readonly IReadOnlyList<LlamaWeightSpec> _encoderWeights;
    private readonly IReadOnlyList<LlamaWeightSpec> _decoderWeights;
    private readonly object _encoderLock = new(), _decoderLock = new();

    /// <summary>The architecture.</summary>
    public SamConfig Config { get; }

    /// <summary>Builds both graphs for <paramref name="config"/> and opens their sessions.</summary>
    /// <param name="config">The architecture (validated here).</param>
    /// <param name="intraOpThreads">CPU threads per operator (0 = ONNX Runtime's default).</param>
    /// <param name="device">Execution provider.</param>
    /// <param name="cudaDevice">The GPU (CUDA ordinal) of the CUDA provider.</param>
    /// <exception cref="TensorFormatException">the config cannot be represented.</exception>
    /// <exception cref="ExecutionProviderUnavailableException">the CUDA provider cannot load (names what is missing).</exception>
    public SamSessions(SamConfig config, int intraOpThreads = 0, InferenceDevice device = InferenceDevice.Cpu, int cudaDevice = 0)
    {
        config.Validate("config.json");
        ArgumentOutOfRangeException.ThrowIfNegative(cudaDevice);
        Config = config;
        Device = device;
        CudaDevice = device == InferenceDevice.Cuda ? cudaDevice : 0;
        _encoderWeights = SamWeightLayout.Encoder(config);
        _decoderWeights = SamWeightLayout.Decoder(config);
        using var so = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (intraOpThreads > 0) so.IntraOpNumThreads = intraOpThreads;
        if (device == InferenceDevice.Cuda) CudaProvider.Append(so, cudaDevice);
        _encoder = new InferenceSession(SamGraphBuilder.BuildEncoder(config).ToModelBytes(), so);
        try { _decoder = new InferenceSession(SamGraphBuilder.BuildDecoder(config).ToModelBytes(), so); }
        catch { _encoder.Dispose(); throw; }
    }

    /// <summary>Execution provider.</summary>
    public InferenceDevice Device { get; }

    /// <summary>The GPU (CUDA ordinal) of the CUDA provider; 0 on the CPU.</summary>
    public int CudaDevice { get; }

    /// <summary>Floats in one image embedding: output_channels × grid × grid.</summary>
    public int EmbeddingLength => Config.Vision.OutputChannels * Config.Vision.GridSize * Config.Vision.GridSize;

    /// <summary>Image embedding [C, grid, grid] of one normalised, padded [channels, image, image] CHW image.</summary>
    /// <exception cref="ArgumentException">the pixel count does not match the config.</exception>
    public float[] Encode(float[] pixels, LlamaWeights weights)
    {
        var v = Config.Vision;
        long need = (long)v.NumChannels * v.ImageSize * v.ImageSize;
        if (pixels.Length != need)
            throw new ArgumentException($"pixels: {pixels.Length} values; a [{v.NumChannels}, {v.ImageSize}, {v.ImageSize}] image needs {need}", nameof(pixels));
        using var input = OrtValue.CreateTensorValueFromMemory(pixels, [1, v.NumChannels, v.ImageSize, v.ImageSize]);
        return Run(_encoder, _encoderLock, _encoderWeights, weights, [(SamGraphBuilder.PixelValues, input)], [SamGraphBuilder.ImageEmbeddings])[0];
    }

    /// <summary>Masks for one prompt on an embedding from <see cref="Encode"/>.</summary>
    /// <exception cref="ArgumentException">a malformed prompt (no box and no points, odd coordinate count, labels not 0/1 or not one per point) or embedding length.</exception>
    public SamMaskOutput Decode(float[] imageEmbedding, SamPrompt prompt, bool multimask, LlamaWeights weights)
    {
        if (imageEmbedding.Length != EmbeddingLength)
            throw new ArgumentException($"image embedding: {imageEmbedding.Length} values; this model's is {EmbeddingLength}", nameof(imageEmbedding));
        var (coords, labels) = PromptPoints(prompt);
        int grid = Config.Vision.GridSize, c = Config.Vision.OutputChannels;
        using var emb = OrtValue.CreateTensorValueFromMemory(imageEmbedding, [1, c, grid, grid]);
        using var pc = OrtValue.CreateTensorValueFromMemory(coords, [1, labels.Length, 2]);
        using var pl = OrtValue.CreateTensorValueFromMemory(labels, [1, labels.Length]);
        var outputs = Run(_decoder, _decoderLock, _decoderWeights, weights,
            [(SamGraphBuilder.ImageEmbeddings, emb), (SamGraphBuilder.PointCoords, pc), (SamGraphBuilder.PointLabels, pl)],
            [SamGraphBuilder.LowResMasks, SamGraphBuilder.IouPredictions]);
        int tokens = Config.MaskDecoder.NumMaskTokens, low = Config.LowResSize, plane = low * low;
        // Mask token 0 is trained for single-mask output, tokens 1.. for the ambiguity-aware multimask output.
        int first = multimask ? 1 : 0, count = multimask ? tokens - 1 : 1;
        return new SamMaskOutput(outputs[0].AsSpan(first * plane, count * plane).ToArray(), outputs[1].AsSpan(first, count).ToArray(), count, low);
    }

    /// <summary>
    /// The decoder's point inputs for a prompt, as SAM's prompt encoder orders them: the points,
    /// then a padding point (label -1) when there is no box, then the box corners (labels 2 and 3).
    /// </summary>
    /// <exception cref="ArgumentException">see <see cref="Decode"/>.</exception>
    public static (float[] Coords, float[] Labels) PromptPoints(SamPrompt prompt)
    {
        var coords = new List<float>();
        var labels = new List<float>();
        if (prompt.Points is { } points)
        {
            if (points.Length == 0 || points.Length % 2 != 0) throw new ArgumentException($"prompt: {points.Length} point coordinates; points are x, y pairs", nameof(prompt));
            if (prompt.PointLabels is not { } pl || pl.Length != points.Length / 2)
                throw new ArgumentException($"prompt: {points.Length / 2} points need as many labels, got {prompt.PointLabels?.Length.ToString() ?? "none"}", nameof(prompt));
            foreach (int l in pl)
                if (l is not (0 or 1)) throw new ArgumentException($"prompt: point label {l}; labels are 1 (foreground) or 0 (background)", nameof(prompt));
            coords.AddRange(points);
            labels.AddRange(pl.Select(l => (float)l));
            if (prompt.Box is null) { coords.AddRange([0f, 0f]); labels.Add(-1f); }
        }
        else if (prompt.PointLabels is { Length: > 0 })
            throw new ArgumentException("prompt: point labels without points", nameof(prompt));
        if (prompt.Box is { } box)
        {
            if (box.Length != 4) throw new ArgumentException($"prompt: box has {box.Length} values; it is x0, y0, x1, y1", nameof(prompt));
            coords.AddRange(box);
            labels.AddRange([2f, 3f]);
        }
        if (labels.Count == 0) throw new ArgumentException("prompt: neither a box nor points", nameof(prompt));
        return (coords.ToArray(), labels.ToArray());
    }

    private static float[][] Run(InferenceSession session, object gate, IReadOnlyList<LlamaWeightSpec> layout, LlamaWeights weights,
        (string Name, OrtValue Value)[] inputs, string[] outputs)
    {
        if (weights.ElementType != OnnxElementType.Float)
            throw new ArgumentException($"weights {weights.Source} are {weights.ElementType}; the SAM graphs are Float");
        using var binding = session.CreateIoBinding();
        foreach (var (name, value) in inputs) binding.BindInput(name, value);
        foreach (var w in layout) binding.BindInput(w.Name, weights[w.Name]);
        foreach (var o in outputs) binding.BindOutputToDevice(o, OrtMemoryInfo.DefaultInstance);
        lock (gate)
        {
            using var runOptions = new RunOptions();
            session.RunWithBinding(runOptions, binding);
        }
        using var values = binding.GetOutputValues();
        return values.Select(v => v.GetTensorDataAsSpan<float>().ToArray()).ToArray();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _encoder.Dispose();
        _decoder.Dispose();
    }
}
