using System.Text.Json;
using CycleQD.Onnx.Generation;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Tokenization;
using CycleQD.Tensors;

namespace CycleQD.Onnx.Runtime;

/// <summary>Which token ids end a generated sequence.</summary>
public enum EosChoice
{
    /// <summary>
    /// The tokenizer's EOS only (tokenizer_config.json eos_token, or the SentencePiece model's):
    /// what the reference's vLLM stops on. When the tokenizer names none, config.json's
    /// eos_token_id is used instead.
    /// </summary>
    Tokenizer,

    /// <summary>config.json's eos_token_id together with generation_config.json's (what Hugging Face's generate stops on).</summary>
    ModelConfig,
}

/// <summary>
/// A Hugging Face Llama-family folder opened for generation: config, tokenizer, memory-mapped
/// weights bound as graph inputs, a session (on the CPU, for a small model, one per lane: see
/// <see cref="Lanes"/>) and a generator. Owns all of them.
/// </summary>
public sealed class LlamaModel : IDisposable
{
    private readonly SafetensorsModel _file;
    private readonly DevicePlacement? _placement;
    private readonly IReadOnlyList<ILlamaSession> _lanes;

    /// <summary>
    /// Largest weight set (bytes in the graph's type) for which a CPU model opened with the default
    /// threads decodes in lanes: one session per lane, one thread each, batches side by side. Such a
    /// model's decoding step is many operators of a few microseconds, too small to share among
    /// threads (waking a thread costs more), and its weights stay in the cache for every lane; a
    /// larger model's products are large enough to share, and each lane would read all its weights
    /// again. Measured on stories260K (1 MB): two lanes of 32 rows, 1.4× one batch of 64 on 2 threads (docs/perf.md).
    /// </summary>
    public const long LaneWeightBytes = 32L << 20;

    /// <summary>
    /// Most lanes the default picks, each with one thread (a call of a few hundred prompts still gives
    /// every lane a batch of dozens; the cores beyond stay free for the tasks' harnesses).
    /// </summary>
    public const int MaxDefaultLanes = 8;

    /// <summary>The folder.</summary>
    public HfModelFolder Folder { get; }

    /// <summary>The session (one per architecture; bind other weights to it with <see cref="LlamaWeights"/>).</summary>
    public ILlamaSession Session { get; }

    /// <summary>The folder's own weights.</summary>
    public LlamaWeights Weights { get; }

    /// <summary>The folder's tokenizer.</summary>
    public TextTokenizer Tokenizer { get; }

    /// <summary>Generator over <see cref="Session"/> (and the other lanes) and <see cref="Weights"/>.</summary>
    public LlamaGenerator Generator { get; }

    /// <summary>Sessions that decode batches side by side, each on its own thread (1: <see cref="Session"/> alone).</summary>
    public int Lanes => _lanes.Count;

    /// <summary>ONNX Runtime intra-op threads of each lane's session (0: its default, one per core).</summary>
    public int ThreadsPerLane { get; }

    private LlamaModel(HfModelFolder folder, SafetensorsModel file, IReadOnlyList<ILlamaSession> lanes, int threadsPerLane, LlamaWeights weights, TextTokenizer tokenizer,
        LlamaGenerator generator, DevicePlacement? placement)
    {
        _placement = placement;
        Folder = folder;
        _file = file;
        _lanes = lanes;
        ThreadsPerLane = threadsPerLane;
        Session = lanes[0];
        Weights = weights;
        Tokenizer = tokenizer;
        Generator = generator;
    }

    /// <summary>Opens <paramref name="directory"/>, checking config, tokenizer and every weight before building the session.</summary>
    /// <exception cref="TensorFormatException">bad config, unsupported model_type, missing tokenizer, missing or misshapen tensor (each names the file and tensor).</exception>
    /// <exception cref="ExecutionProviderUnavailableException">CUDA requested but its provider cannot load, or cannot build the fused graph (the message names the plain graph as the way out).</exception>
    /// <param name="directory">The model folder.</param>
    /// <param name="device">Execution provider.</param>
    /// <param name="maxBatch">Most sequences per generation batch.</param>
    /// <param name="intraOpThreads">CPU threads per operator (0 = ONNX Runtime's default; with lanes, one each when they are picked, the cores shared among them when asked for).</param>
    /// <param name="elementType">Graph and weight type (weights stored in another type are converted once).</param>
    /// <param name="graph">Plain or fused graph; null picks <see cref="ILlamaSession.DefaultGraph(InferenceDevice, LlamaConfig, OnnxElementType)"/> for the device.</param>
    /// <param name="eos">Which ids end a sequence (default: the tokenizer's, as the reference).</param>
    /// <param name="cudaDevice">The GPU (CUDA ordinal) of the CUDA provider.</param>
    /// <param name="deviceWeights">
    /// On CUDA, copy the folder's weights into GPU memory once, so that runs read them there (true);
    /// false leaves them in host memory, for a caller that binds other weights (a run's candidates, which
    /// are already on the GPU) and would otherwise hold a second weight set on the device. On the CPU
    /// the weights are read in place from the memory-mapped files either way.
    /// </param>
    /// <param name="lanes">
    /// CPU sessions that decode batches side by side (see <see cref="LlamaGenerator"/>): 0 picks
    /// (<see cref="LanePlan"/>: one per core, at most <see cref="MaxDefaultLanes"/>, one thread each, for a model of at most
    /// <see cref="LaneWeightBytes"/> opened with the default threads; else 1); CUDA takes 0 or 1.
    /// </param>
    /// <exception cref="ArgumentOutOfRangeException">negative lanes, or more than one on CUDA.</exception>
    public static LlamaModel Open(string directory, InferenceDevice device = InferenceDevice.Cpu, int maxBatch = 64, int intraOpThreads = 0,
        OnnxElementType elementType = OnnxElementType.Float, LlamaGraphKind? graph = null, EosChoice eos = EosChoice.Tokenizer, int cudaDevice = 0,
        bool deviceWeights = true, int lanes = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(lanes);
        if (device == InferenceDevice.Cuda && lanes > 1)
            throw new ArgumentOutOfRangeException(nameof(lanes), lanes, "lanes are CPU sessions side by side; the CUDA provider runs one session (leave lanes at 0 or 1)");
        var folder = HfModelFolder.Open(directory);
        LlamaGraphBuilder.Validate(folder.Config, folder.ConfigPath);
        var tokenizer = TextTokenizer.Load(folder);
        var file = folder.OpenWeights();
        LlamaWeights? weights = null;
        var sessions = new List<ILlamaSession>();
        DevicePlacement? placement = null;
        try
        {
            // NaN or ∞ weights make every logit NaN and the output silently blank: refuse them here.
            file.ThrowIfNonFinite();
            weights = LlamaWeights.FromSafetensors(file, folder.Config, elementType);
            var kind = graph ?? ILlamaSession.DefaultGraph(device, folder.Config, elementType);
            var (laneCount, threads) = LanePlan(device, lanes, intraOpThreads, folder.Config.ParameterCount * ElementBytes(elementType), Environment.ProcessorCount);
            var options = new LlamaGraphOptions(elementType, LastPositionLogitsOnly: true);
            try
            {
                for (int l = 0; l < laneCount; l++)
                    sessions.Add(ILlamaSession.Open(kind, folder.Config, options, device, folder.ConfigPath, threads, cudaDevice));
            }
            catch (Microsoft.ML.OnnxRuntime.OnnxRuntimeException e) when (kind == LlamaGraphKind.Fused && device == InferenceDevice.Cuda)
            {
                // ONNX Runtime's contrib kernels differ between its releases and builds: say which way out there is.
                throw new ExecutionProviderUnavailableException(
                    $"the fused graph ({elementType}) cannot be built on ONNX Runtime's CUDA provider: {e.Message.Trim()}; the plain graph runs on any provider " +
                    "(--graph plain; in a run, evaluation.graph: plain)", e);
            }
            if (device == InferenceDevice.Cuda && deviceWeights)
            {
                // Host weights bound to a CUDA session would be copied to the GPU on every run.
                placement = new DevicePlacement(device, cudaDevice);
                var onDevice = weights.CopyTo(placement, LlamaWeightLayout.For(folder.Config));
                weights.Dispose();
                weights = onDevice;
            }
            var generator = LlamaGenerator.OnLanes(sessions, weights, tokenizer, EosIds(folder, tokenizer, eos), maxBatch);
            return new LlamaModel(folder, file, sessions, threads, weights, tokenizer, generator, placement);
        }
        catch
        {
            foreach (var s in sessions) s.Dispose();
            weights?.Dispose();
            placement?.Dispose();
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A generator for another weight set of the same architecture (e.g. a merged candidate), over
    /// this model's sessions (all its lanes) and tokenizer: nothing is rebuilt. The weights are not owned.
    /// </summary>
    public LlamaGenerator CreateGenerator(LlamaWeights weights, int? maxBatch = null) =>
        LlamaGenerator.OnLanes(_lanes, weights, Tokenizer, Generator.EosIds, maxBatch ?? Generator.MaxBatch);

    /// <summary>
    /// The lanes and the intra-op threads of each lane's session for a model of
    /// <paramref name="weightBytes"/> on <paramref name="cores"/> cores, as <see cref="Open"/> takes them:
    /// <paramref name="lanes"/> 0 picks one lane per core (at most <see cref="MaxDefaultLanes"/>), one
    /// thread each, for a CPU model of at most <see cref="LaneWeightBytes"/> opened with the default
    /// threads, and one lane otherwise; explicit lanes without explicit threads share the cores.
    /// </summary>
    /// <remarks>
    /// One thread per lane because a step of such a model on one thread was faster than on two at
    /// batch 1 and 16 (the batch a lane gets from a call of 64 prompts on 4 cores), and only slower at
    /// batch 64 (docs/perf.md; measured on 2 cores only).
    /// </remarks>
    public static (int Lanes, int ThreadsPerLane) LanePlan(InferenceDevice device, int lanes, int intraOpThreads, long weightBytes, int cores)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(lanes);
        ArgumentOutOfRangeException.ThrowIfNegative(intraOpThreads);
        cores = Math.Max(1, cores);
        if (device == InferenceDevice.Cuda) return (1, intraOpThreads);
        if (lanes == 0)
        {
            lanes = intraOpThreads == 0 && weightBytes <= LaneWeightBytes ? Math.Min(cores, MaxDefaultLanes) : 1;
            if (lanes > 1) return (lanes, 1);
        }
        if (lanes == 1) return (1, intraOpThreads);
        return (lanes, intraOpThreads > 0 ? intraOpThreads : Math.Max(1, cores / lanes));
    }

    private static long ElementBytes(OnnxElementType type) => type is OnnxElementType.Float16 or OnnxElementType.BFloat16 ? 2 : 4;

    /// <summary>
    /// A scorer of token sequences (logits after every position, one forward pass per window) over
    /// <paramref name="weights"/> (null: the folder's own; not owned), on this model's device. It opens
    /// its own session: the generation session returns only the last position's logits.
    /// </summary>
    /// <param name="weights">Weights of this architecture, e.g. a candidate's (null: <see cref="Weights"/>).</param>
    /// <param name="intraOpThreads">CPU threads per operator (0: ONNX Runtime's default).</param>
    public LlamaSequenceScorer CreateScorer(LlamaWeights? weights = null, int intraOpThreads = 0) =>
        new(Folder.Config, weights ?? Weights, Session.Device, Folder.ConfigPath, intraOpThreads, Session.CudaDevice);

    /// <summary>The chat format of the folder's template (chat_template.jinja or tokenizer_config.json), or null.</summary>
    public ChatFormat? ChatFormat
    {
        get
        {
            if (Folder.FindFile("chat_template.jinja") is string jinja) return ChatTemplate.Detect(File.ReadAllText(jinja));
            if (Folder.FindFile("tokenizer_config.json") is string tc)
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(tc));
                if (doc.RootElement.TryGetProperty("chat_template", out var t) && t.ValueKind == JsonValueKind.String)
                    return ChatTemplate.Detect(t.GetString());
            }
            return null;
        }
    }

    /// <summary>The ids that end a sequence for <paramref name="choice"/>.</summary>
    /// <exception cref="TensorFormatException">generation_config.json is not valid JSON.</exception>
    public static IReadOnlyCollection<int> EosIds(HfModelFolder folder, TextTokenizer tokenizer, EosChoice choice) =>
        choice == EosChoice.Tokenizer && tokenizer.EosId is int eos ? [eos]
        : choice == EosChoice.Tokenizer ? [.. folder.Config.EosTokenIds]
        : [.. ConfigEosIds(folder)];

    /// <summary>EOS ids from config.json and generation_config.json together.</summary>
    private static HashSet<int> ConfigEosIds(HfModelFolder folder)
    {
        var ids = new HashSet<int>(folder.Config.EosTokenIds);
        if (folder.FindFile("generation_config.json") is string gc)
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(gc));
                if (doc.RootElement.TryGetProperty("eos_token_id", out var e))
                {
                    if (e.ValueKind == JsonValueKind.Number) ids.Add(e.GetInt32());
                    else if (e.ValueKind == JsonValueKind.Array) foreach (var x in e.EnumerateArray()) ids.Add(x.GetInt32());
                }
            }
            catch (JsonException ex) { throw new TensorFormatException(gc, null, "invalid JSON: " + ex.Message, ex); }
        }
        return ids;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var s in _lanes) s.Dispose();
        Weights.Dispose();
        _placement?.Dispose();
        _file.Dispose();
    }
}
