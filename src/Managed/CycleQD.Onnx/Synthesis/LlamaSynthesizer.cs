using System.Diagnostics;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Text.Json;
using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Tokenization;
using CycleQD.Tensors;

namespace CycleQD.Onnx.Synthesis;

/// <summary>What <see cref="LlamaSynthesizer.Write"/> writes.</summary>
public sealed record SynthesisOptions
{
    /// <summary>A name of <see cref="SyntheticShapes.Names"/>.</summary>
    public required string Shape { get; init; }
    /// <summary>Decoder layers instead of the shape's own (a smaller model of the same width), or null.</summary>
    public int? Layers { get; init; }
    /// <summary>Experts written beside the base (expert-1 … expert-N).</summary>
    public int Experts { get; init; } = 3;
    /// <summary>Seed of every weight; the same seed and options give the same bytes, whatever the thread count.</summary>
    public ulong Seed { get; init; } = 1;
    /// <summary>Stored dtype: BF16 (as Llama-3 checkpoints), F16 or F32.</summary>
    public DType DType { get; init; } = DType.BF16;
    /// <summary>Rank of each expert's low-rank perturbation of every matrix.</summary>
    public int Rank { get; init; } = 8;
    /// <summary>Standard deviation of the low-rank perturbation's entries, relative to the initialisation's.</summary>
    public double LowRankScale { get; init; } = 0.05;
    /// <summary>Standard deviation of the dense perturbation's entries, relative to the initialisation's (norm weights: absolute).</summary>
    public double DenseScale { get; init; } = 0.01;
    /// <summary>A folder whose tokenizer files are copied (e.g. a real Llama-3 tokenizer); null writes the byte-level tokenizer.</summary>
    public string? TokenizerFrom { get; init; }
    /// <summary>Largest weight file; larger models are sharded.</summary>
    public long MaxShardBytes { get; init; } = SafetensorsWriter.DefaultMaxShardBytes;
    /// <summary>Threads that draw the weights; 0 for one per processor.</summary>
    public int Threads { get; init; }

    /// <summary>
    /// Whether base/ is written. The base's bytes depend only on the shape and the seed, and expert k's
    /// only on those and k, so a set can be split over two file systems: the experts here, the base
    /// elsewhere with <see cref="Experts"/> 0.
    /// </summary>
    public bool WriteBase { get; init; } = true;
}

/// <summary>Bytes of weights written so far, for a progress display.</summary>
/// <param name="Model">Folder name being written (base, expert-1, …).</param>
/// <param name="BytesWritten">Weight bytes written so far over all models.</param>
/// <param name="TotalBytes">Weight bytes of all models.</param>
public sealed record SynthesisProgress(string Model, long BytesWritten, long TotalBytes);

/// <summary>The output folder cannot take the models (not empty, or too little free space); the message says which.</summary>
public sealed class SynthesisTargetException(string message) : IOException(message);

/// <summary>What was written.</summary>
/// <param name="Directory">The output folder.</param>
/// <param name="Models">The model folders, base first.</param>
/// <param name="Config">Their shared config.</param>
/// <param name="BytesWritten">Weight bytes written over all models.</param>
/// <param name="Elapsed">Wall time of the whole write, flushes to disk included.</param>
public sealed record SynthesisResult(string Directory, IReadOnlyList<string> Models, LlamaConfig Config, long BytesWritten, TimeSpan Elapsed);

/// <summary>
/// Writes a random-initialised Llama-family model and experts derived from it, as Hugging Face
/// folders (config.json, generation_config.json, sharded safetensors, tokenizer): for dry runs of
/// a machine and for checks where no model can be downloaded. Scores of such models mean nothing;
/// their shapes, dtypes and costs are those of the real model.
/// <para>
/// The base's matrices are uniform with standard deviation 0.02 (Hugging Face's initializer_range
/// for Llama), its norm weights 1. Expert k adds to every matrix W (rows × cols) a low-rank term
/// U Vᵀ (rank <see cref="SynthesisOptions.Rank"/>) and a dense term, each with its own seeded draws,
/// so that its task vector has a few dominant singular directions over a noise floor as fine-tuned
/// experts do; norm weights get the dense term only. Every row is drawn from its own counter-keyed
/// generator (seed, model, tensor, row), so the bytes do not depend on the thread count, and an
/// expert recomputes the base's rows instead of reading them back.
/// </para>
/// </summary>
public static class LlamaSynthesizer
{
    /// <summary>Standard deviation of the base's matrix entries (Llama's initializer_range).</summary>
    public const double InitStd = 0.02;

    /// <summary>Name of the base's folder; experts are "expert-1" … .</summary>
    public const string BaseFolder = "base";

    /// <summary>Name of the file that records what was synthesized (shape, seed, perturbation).</summary>
    public const string ManifestFile = "synthesis.json";

    private const int StreamBase = 0, StreamLeft = 1, StreamRight = 2, StreamDense = 3;
    private const long ChunkBytes = 16L << 20;

    /// <summary>Folder name of expert <paramref name="k"/> (1-based).</summary>
    public static string ExpertFolder(int k) => $"expert-{k}";

    /// <summary>Weight bytes <paramref name="options"/> writes over all models.</summary>
    public static long PlannedBytes(SynthesisOptions options)
    {
        var config = SyntheticShapes.Get(options.Shape, options.Layers);
        return (options.Experts + (options.WriteBase ? 1 : 0)) * config.ParameterCount * DTypes.SizeOf(options.DType);
    }

    /// <summary>Writes the base and the experts into <paramref name="directory"/> (absent or empty).</summary>
    /// <exception cref="ArgumentException">bad options (shape, dtype, counts).</exception>
    /// <exception cref="SynthesisTargetException">the folder is not empty, or its file system has too little free space for the weights.</exception>
    /// <exception cref="TensorFormatException">the tokenizer folder has no readable tokenizer, or uses ids beyond the vocabulary.</exception>
    public static SynthesisResult Write(string directory, SynthesisOptions options, IProgress<SynthesisProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var config = SyntheticShapes.Get(options.Shape, options.Layers);
        Validate(options);
        directory = Path.GetFullPath(directory);
        if (Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any())
            throw new SynthesisTargetException($"{directory}: the output folder is not empty (choose a new folder)");
        if (options.TokenizerFrom is { } from) CheckTokenizerFolder(from);
        long total = PlannedBytes(options);
        Directory.CreateDirectory(directory);
        CheckFreeSpace(directory, total);

        var clock = Stopwatch.StartNew();
        var models = new List<string>();
        long written = 0;
        var specs = LlamaWeightLayout.For(config);
        (int? Bos, int[] Eos)? ids = null;
        for (int m = options.WriteBase ? 0 : 1; m <= options.Experts; m++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            string name = m == 0 ? BaseFolder : ExpertFolder(m);
            string folder = Path.Combine(directory, name);
            Directory.CreateDirectory(folder);
            ids ??= TokenizerIds(folder, options.TokenizerFrom, config, options.DType);
            if (m > 0) WriteTokenizerFiles(folder, options.TokenizerFrom);
            WriteConfig(folder, config, options.DType, ids.Value.Bos, ids.Value.Eos);
            int model = m;
            var tensors = specs.Select((spec, t) => new TensorData(spec.Name, options.DType, spec.Shape, stream =>
                WriteTensor(stream, options, model, t, spec.Shape, n =>
                {
                    written += n;
                    progress?.Report(new SynthesisProgress(name, written, total));
                }, cancellationToken))).ToList();
            SafetensorsWriter.WriteModel(folder, tensors, options.MaxShardBytes, new Dictionary<string, string> { ["format"] = "pt" });
            models.Add(folder);
        }
        WriteManifest(directory, options, config, total);
        return new SynthesisResult(directory, models, config, written, clock.Elapsed);
    }

    private static void Validate(SynthesisOptions o)
    {
        if (o.DType is not (DType.BF16 or DType.F16 or DType.F32))
            throw new ArgumentException($"dtype {DTypes.Name(o.DType)}: synthesized models are BF16, F16 or F32");
        if (o.Experts < 0) throw new ArgumentException($"experts must be 0 or more, not {o.Experts}");
        if (o.Rank < 0) throw new ArgumentException($"rank must be 0 or more, not {o.Rank}");
        if (!(o.LowRankScale >= 0) || !(o.DenseScale >= 0) || double.IsInfinity(o.LowRankScale) || double.IsInfinity(o.DenseScale))
            throw new ArgumentException("perturbation scales must be finite and 0 or more");
        if (!o.WriteBase && o.Experts == 0) throw new ArgumentException("nothing to write: no base and no experts");
        if (o.Threads < 0) throw new ArgumentException($"threads must be 0 (one per processor) or more, not {o.Threads}");
        if (o.MaxShardBytes < 1) throw new ArgumentException("the largest shard must be at least one byte");
    }

    private static void CheckFreeSpace(string directory, long needed)
    {
        long free;
        try { free = new DriveInfo(directory).AvailableFreeSpace; }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException) { return; }
        // A little headroom for config, tokenizer and file system overhead.
        if (free < needed + (needed >> 6))
            throw new SynthesisTargetException($"{directory}: the models need {Gb(needed)} of disk and the file system has {Gb(free)} free " +
                                  "(fewer experts, --layers or another folder make it fit)");
    }

    private static string Gb(long bytes) => $"{bytes / 1e9:0.##} GB";

    /// <summary>
    /// Writes one tensor's bytes, drawing rows in parallel chunk by chunk; a chunk is written while
    /// the next one is drawn, so the time is about the larger of the two, not their sum.
    /// </summary>
    private static void WriteTensor(Stream stream, SynthesisOptions o, int model, int tensor, long[] shape, Action<long> advanced, CancellationToken ct)
    {
        bool vector = shape.Length == 1;
        long rows = vector ? 1 : shape[0];
        int cols = checked((int)(vector ? shape[0] : shape.Skip(1).Aggregate(1L, (a, b) => a * b)));
        int elementSize = DTypes.SizeOf(o.DType);
        long rowBytes = (long)cols * elementSize;
        int rowsPerChunk = (int)Math.Clamp(ChunkBytes / rowBytes, 1, rows);
        byte[] drawing = new byte[rowsPerChunk * rowBytes], writing = rows > rowsPerChunk ? new byte[drawing.Length] : [];
        var right = model > 0 && !vector && o.Rank > 0 ? RightFactor(o, model, tensor, cols) : null;
        var parallel = new ParallelOptions { CancellationToken = ct, MaxDegreeOfParallelism = o.Threads > 0 ? o.Threads : -1 };
        Task pending = Task.CompletedTask;
        for (long start = 0; start < rows; start += rowsPerChunk)
        {
            int count = (int)Math.Min(rowsPerChunk, rows - start);
            long first = start;
            byte[] target = drawing;
            Parallel.For(0, count, parallel, () => new float[cols], (i, _, row) =>
            {
                DrawRow(o, model, tensor, first + i, vector, right, row);
                DTypeConversion.FromSingle(row, o.DType, target.AsSpan((int)(i * rowBytes), (int)rowBytes));
                return row;
            }, _ => { });
            pending.GetAwaiter().GetResult();
            int bytes = (int)(count * rowBytes);
            pending = Task.Run(() =>
            {
                stream.Write(target, 0, bytes);
                advanced(bytes);
            }, ct);
            (drawing, writing) = (writing, drawing);
        }
        pending.GetAwaiter().GetResult();
    }

    /// <summary>Row <paramref name="row"/> of a tensor of model <paramref name="model"/> (0: the base) in float32.</summary>
    private static void DrawRow(SynthesisOptions o, int model, int tensor, long row, bool vector, float[]? right, Span<float> values)
    {
        if (vector) values.Fill(1f);
        else FillUniform(values, Key(o.Seed, 0, tensor, row, StreamBase), (float)InitStd, accumulate: false);
        if (model == 0) return;

        float denseStd = (float)(o.DenseScale * (vector ? 1.0 : InitStd));
        if (denseStd > 0) FillUniform(values, Key(o.Seed, model, tensor, row, StreamDense), denseStd, accumulate: true);
        if (right is null) return;
        // U's row: r entries of standard deviation 1/√r, so that (U Vᵀ) entries have V's standard deviation.
        Span<float> left = stackalloc float[o.Rank];
        left.Clear();
        FillUniform(left, Key(o.Seed, model, tensor, row, StreamLeft), (float)(1.0 / Math.Sqrt(o.Rank)), accumulate: false);
        int cols = values.Length;
        for (int k = 0; k < o.Rank; k++)
            AddScaled(values, right.AsSpan(k * cols, cols), left[k]);
    }

    /// <summary>Vᵀ of expert <paramref name="model"/>'s low-rank term for one tensor: rank rows of <paramref name="cols"/> entries.</summary>
    private static float[] RightFactor(SynthesisOptions o, int model, int tensor, int cols)
    {
        var right = new float[o.Rank * cols];
        float std = (float)(o.LowRankScale * InitStd);
        for (int k = 0; k < o.Rank; k++)
            FillUniform(right.AsSpan(k * cols, cols), Key(o.Seed, model, tensor, k, StreamRight), std, accumulate: false);
        return right;
    }

    private static void AddScaled(Span<float> values, ReadOnlySpan<float> source, float scale)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var vs = MemoryMarshal.Cast<float, Vector<float>>(values);
            var ss = MemoryMarshal.Cast<float, Vector<float>>(source);
            for (int v = 0; v < vs.Length; v++) vs[v] += ss[v] * scale;
            i = vs.Length * Vector<float>.Count;
        }
        for (; i < values.Length; i++) values[i] += source[i] * scale;
    }

    /// <summary>
    /// Uniform draws of standard deviation <paramref name="std"/> (on [−√3·std, √3·std)), written or
    /// added. Element j's draw is a 32-bit integer hash of (key, j), so vector lanes and the scalar tail
    /// compute the same values, and the row costs a few integer operations per element.
    /// </summary>
    private static void FillUniform(Span<float> values, ulong key, float std, bool accumulate)
    {
        float halfWidth = std * MathF.Sqrt(3f);
        uint k0 = (uint)key, k1 = (uint)(key >> 32);
        int i = 0;
        if (Vector.IsHardwareAccelerated && values.Length >= Vector<uint>.Count)
        {
            var lanes = Vector<uint>.Indices;
            var vectors = MemoryMarshal.Cast<float, Vector<float>>(values);
            for (int v = 0; v < vectors.Length; v++)
            {
                var x = (lanes + new Vector<uint>((uint)(v * Vector<uint>.Count))) * Golden + new Vector<uint>(k0);
                x ^= new Vector<uint>(k1);
                x ^= Vector.ShiftRightLogical(x, 16);
                x *= Mix1;
                x ^= Vector.ShiftRightLogical(x, 13);
                x *= Mix2;
                x ^= Vector.ShiftRightLogical(x, 16);
                var draw = Vector.ConvertToSingle(Vector.AsVectorInt32(Vector.ShiftRightLogical(x, 9))) * Unit - Vector<float>.One;
                vectors[v] = accumulate ? vectors[v] + draw * halfWidth : draw * halfWidth;
            }
            i = vectors.Length * Vector<float>.Count;
        }
        for (; i < values.Length; i++)
        {
            float draw = (Hash((uint)i, k0, k1) >> 9) * Unit - 1f;
            values[i] = accumulate ? values[i] + draw * halfWidth : draw * halfWidth;
        }
    }

    private const uint Golden = 0x9E3779B9u, Mix1 = 0x85EBCA6Bu, Mix2 = 0xC2B2AE35u;
    // 23-bit draws mapped onto [−1, 1).
    private const float Unit = 2f / (1 << 23);

    private static uint Hash(uint index, uint k0, uint k1)
    {
        uint x = (index * Golden + k0) ^ k1;
        x ^= x >> 16;
        x *= Mix1;
        x ^= x >> 13;
        x *= Mix2;
        return x ^ (x >> 16);
    }

    private static ulong SplitMix(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static ulong Key(ulong seed, int model, int tensor, long row, int stream)
    {
        ulong s = seed;
        ulong k = SplitMix(ref s);
        k ^= (ulong)model * 0xD6E8FEB86659FD93UL;
        s = k;
        k = SplitMix(ref s) ^ ((ulong)tensor << 3 | (uint)stream);
        s = k;
        return SplitMix(ref s) ^ (ulong)row * 0x9E3779B97F4A7C15UL;
    }

    /// <summary>
    /// Writes the tokenizer into the first model's folder and reads it back: the BOS id and EOS ids that
    /// config.json should name (the generated tokenizer's are Llama-3's), after checking that every id
    /// the tokenizer can produce lies inside the model's vocabulary.
    /// </summary>
    private static (int? Bos, int[] Eos) TokenizerIds(string folder, string? from, LlamaConfig config, DType dtype)
    {
        WriteTokenizerFiles(folder, from);
        if (from is null) return (ByteLevelTokenizerFiles.BeginOfText, [ByteLevelTokenizerFiles.EndOfText, ByteLevelTokenizerFiles.EndOfTurn]);
        // The tokenizer reads its BOS from config.json when it names one: write one that names none first.
        WriteConfig(folder, config, dtype, null, []);
        var tokenizer = TextTokenizer.Load(HfModelFolder.Open(folder));
        if (tokenizer.MaxTokenId >= config.VocabSize)
            throw new TensorFormatException(from, null, $"the tokenizer produces id {tokenizer.MaxTokenId}, beyond the model's vocabulary of {config.VocabSize}");
        return (tokenizer.BosId, tokenizer.EosId is int e ? [e] : []);
    }

    private static void CheckTokenizerFolder(string from)
    {
        if (!Directory.Exists(from)) throw new DirectoryNotFoundException($"tokenizer folder not found: {Path.GetFullPath(from)}");
        if (!File.Exists(Path.Combine(from, "tokenizer.json")) && !File.Exists(Path.Combine(from, "tokenizer.model")))
            throw new TensorFormatException(Path.GetFullPath(from), null, "no tokenizer to copy: the folder has neither tokenizer.json nor tokenizer.model");
    }

    private static void WriteTokenizerFiles(string folder, string? from)
    {
        if (from is null)
        {
            ByteLevelTokenizerFiles.Write(folder);
            return;
        }
        CheckTokenizerFolder(from);
        foreach (var f in new[] { "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja" })
        {
            string source = Path.Combine(from, f);
            if (File.Exists(source)) File.Copy(source, Path.Combine(folder, f), overwrite: true);
        }
    }

    private static void WriteConfig(string folder, LlamaConfig c, DType dtype, int? bos, int[] eos)
    {
        string torchDtype = dtype switch { DType.BF16 => "bfloat16", DType.F16 => "float16", _ => "float32" };
        SafetensorsWriter.WriteAtomically(Path.Combine(folder, "config.json"), stream =>
        {
            using var w = new Utf8JsonWriter(stream, ReadableJson.Writer(indented: true));
            w.WriteStartObject();
            w.WriteStartArray("architectures");
            w.WriteStringValue("LlamaForCausalLM");
            w.WriteEndArray();
            w.WriteString("model_type", c.ModelType);
            w.WriteNumber("hidden_size", c.HiddenSize);
            w.WriteNumber("intermediate_size", c.IntermediateSize);
            w.WriteNumber("num_hidden_layers", c.NumHiddenLayers);
            w.WriteNumber("num_attention_heads", c.NumAttentionHeads);
            w.WriteNumber("num_key_value_heads", c.NumKeyValueHeads);
            w.WriteNumber("head_dim", c.HeadDim);
            w.WriteNumber("vocab_size", c.VocabSize);
            w.WriteNumber("max_position_embeddings", c.MaxPositionEmbeddings);
            w.WriteNumber("rms_norm_eps", c.RmsNormEps);
            w.WriteNumber("rope_theta", c.RopeTheta);
            if (c.RopeScaling is { } s)
            {
                w.WriteStartObject("rope_scaling");
                w.WriteString("rope_type", s.Type);
                w.WriteNumber("factor", s.Factor);
                if (s.LowFreqFactor is double lo) w.WriteNumber("low_freq_factor", lo);
                if (s.HighFreqFactor is double hi) w.WriteNumber("high_freq_factor", hi);
                if (s.OriginalMaxPositionEmbeddings is int om) w.WriteNumber("original_max_position_embeddings", om);
                w.WriteEndObject();
            }
            else w.WriteNull("rope_scaling");
            w.WriteBoolean("tie_word_embeddings", c.TieWordEmbeddings);
            w.WriteString("hidden_act", c.HiddenAct);
            w.WriteBoolean("attention_bias", false);
            w.WriteBoolean("mlp_bias", false);
            w.WriteNumber("initializer_range", InitStd);
            if (bos is int b) w.WriteNumber("bos_token_id", b);
            WriteIds(w, "eos_token_id", eos);
            w.WriteString("torch_dtype", torchDtype);
            w.WriteEndObject();
        });
        SafetensorsWriter.WriteAtomically(Path.Combine(folder, "generation_config.json"), stream =>
        {
            using var w = new Utf8JsonWriter(stream, ReadableJson.Writer(indented: true));
            w.WriteStartObject();
            if (bos is int b) w.WriteNumber("bos_token_id", b);
            WriteIds(w, "eos_token_id", eos);
            w.WriteBoolean("do_sample", false);
            w.WriteEndObject();
        });
    }

    private static void WriteIds(Utf8JsonWriter w, string name, int[] ids)
    {
        if (ids.Length == 0) return;
        if (ids.Length == 1) { w.WriteNumber(name, ids[0]); return; }
        w.WriteStartArray(name);
        foreach (int id in ids) w.WriteNumberValue(id);
        w.WriteEndArray();
    }

    private static void WriteManifest(string directory, SynthesisOptions o, LlamaConfig c, long bytes)
    {
        SafetensorsWriter.WriteAtomically(Path.Combine(directory, ManifestFile), stream =>
        {
            using var w = new Utf8JsonWriter(stream, ReadableJson.Writer(indented: true));
            w.WriteStartObject();
            w.WriteString("note", "random weights written by cycleqd synthesize: shapes and costs are real, scores mean nothing");
            w.WriteString("shape", o.Shape);
            w.WriteNumber("layers", c.NumHiddenLayers);
            w.WriteNumber("parameters", c.ParameterCount);
            w.WriteString("dtype", DTypes.Name(o.DType));
            w.WriteNumber("seed", o.Seed);
            w.WriteNumber("experts", o.Experts);
            w.WriteBoolean("base_written", o.WriteBase);
            w.WriteNumber("init_std", InitStd);
            w.WriteNumber("low_rank", o.Rank);
            w.WriteNumber("low_rank_scale", o.LowRankScale);
            w.WriteNumber("dense_scale", o.DenseScale);
            w.WriteString("tokenizer", o.TokenizerFrom is null ? "byte-level (generated)" : "copied from " + Path.GetFullPath(o.TokenizerFrom));
            w.WriteNumber("weight_bytes", bytes);
            w.WriteEndObject();
        });
    }
}
