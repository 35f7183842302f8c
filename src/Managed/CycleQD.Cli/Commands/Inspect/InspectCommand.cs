using System.CommandLine;
using System.Globalization;
using CycleQD.Onnx.Sam;
using CycleQD.Runs.Families;
using CycleQD.Tensors;

namespace CycleQD.Cli.Commands.Inspect;

/// <summary>`cycleqd inspect MODEL`: config summary and a table of tensors.</summary>
internal static class InspectCommand
{
    private static readonly Argument<string> Model = new("MODEL")
    {
        Description = "A Hugging Face model folder (config.json + safetensors) or a single .safetensors file.",
    };

    private static readonly Option<int?> Threads = ThreadsOption.CreateRefused(ThreadsOption.ManagedLoops);

    public static Command Create()
    {
        var cmd = new Command("inspect", "Show a model's config and tensors (name, dtype, shape, MB) and validate its weight files.");
        cmd.Arguments.Add(Model);
        cmd.Options.Add(Threads);
        cmd.SetAction(parse =>
        {
            ThreadsOption.Refuse(parse.GetValue(Threads), ThreadsOption.ManagedLoops);
            return Run(parse.GetRequiredValue(Model), parse.InvocationConfiguration.Output);
        });
        return cmd;
    }

    internal static int Run(string path, TextWriter o)
    {
        var inv = CultureInfo.InvariantCulture;
        string full = Path.GetFullPath(path);
        // A SamModel folder has a config.json of another shape: read it as SAM's, not Llama's.
        bool isSam = Directory.Exists(full) && ModelKindCheck.TryFamilyOfFolder(full) == ModelFamilies.Sam;
        SamConfig? sam = isSam ? SamConfig.Load(Path.Combine(full, "config.json")) : null;
        HfModelFolder? folder = Directory.Exists(full) && sam is null ? HfModelFolder.Open(full) : null;
        using var weights = SafetensorsModel.Open(full);

        o.WriteLine($"model: {full}");
        if (sam != null)
        {
            var v = sam.Vision;
            var cost = SamCost.Of(sam);
            o.WriteLine("  model_type            sam");
            o.WriteLine($"  image encoder         {v.NumHiddenLayers} layers, hidden {v.HiddenSize}, {v.NumAttentionHeads} heads, MLP {v.MlpDim}, window {v.WindowSize}, global attention at [{string.Join(", ", v.GlobalAttnIndexes)}], output channels {v.OutputChannels}");
            o.WriteLine($"  image                 {v.ImageSize}×{v.ImageSize}, patch {v.PatchSize} (embedding grid {v.GridSize}×{v.GridSize})");
            o.WriteLine($"  prompt encoder        hidden {sam.PromptEncoder.HiddenSize}");
            o.WriteLine($"  mask decoder          {sam.MaskDecoder.NumHiddenLayers} layers, hidden {sam.MaskDecoder.HiddenSize}, {sam.MaskDecoder.NumAttentionHeads} heads, {sam.MaskDecoder.NumMaskTokens} mask tokens, low-res masks {sam.LowResSize}×{sam.LowResSize}");
            o.WriteLine($"  parameters (config)   {cost.Parameters.ToString("N0", inv)} (encoder {cost.EncoderParameters.ToString("N0", inv)}, prompt encoder + decoder {cost.DecoderParameters.ToString("N0", inv)})");
            o.WriteLine($"  FLOP                  encoder {(cost.EncoderFlops / 1e9).ToString("F3", inv)} G per image, decoder {(cost.DecoderFlops / 1e9).ToString("F3", inv)} G per box prompt");
        }
        else if (folder != null)
        {
            var c = folder.Config;
            o.WriteLine($"  model_type            {c.ModelType}");
            o.WriteLine($"  hidden_size           {c.HiddenSize}");
            o.WriteLine($"  intermediate_size     {c.IntermediateSize}");
            o.WriteLine($"  num_hidden_layers     {c.NumHiddenLayers}");
            o.WriteLine($"  attention heads       {c.NumAttentionHeads} (key/value heads {c.NumKeyValueHeads}, head_dim {c.HeadDim})");
            o.WriteLine($"  vocab_size            {c.VocabSize}");
            o.WriteLine($"  max_position          {c.MaxPositionEmbeddings}");
            o.WriteLine($"  rope_theta            {c.RopeTheta.ToString(inv)}");
            o.WriteLine($"  rope_scaling          {(c.RopeScaling is { } rs ? $"{rs.Type} (factor {rs.Factor.ToString(inv)})" : "none")}");
            o.WriteLine($"  rms_norm_eps          {c.RmsNormEps.ToString(inv)}");
            o.WriteLine($"  tie_word_embeddings   {(c.TieWordEmbeddings ? "yes (lm_head shares embed_tokens)" : "no")}");
            o.WriteLine($"  parameters (config)   {c.ParameterCount.ToString("N0", inv)}");
            o.WriteLine($"  tokenizer files       {(folder.TokenizerFiles.Count == 0 ? "none found" : string.Join(", ", folder.TokenizerFiles.Select(Path.GetFileName)))}");
        }
        o.WriteLine($"  weight files          {string.Join(", ", weights.Files.Select(f => Path.GetFileName(f.Path)))}");
        o.WriteLine();

        var table = new TextTable("tensor", "dtype", "shape", "MB", "NaN", "Inf").AlignRight(3, 4, 5);
        long elements = 0;
        var bad = new List<(TensorInfo Tensor, NonFiniteCount Count)>();
        foreach (var t in weights.Tensors)
        {
            var c = weights.CountNonFinite(t.Name);
            if (!c.IsFinite) bad.Add((t, c));
            // Integer tensors cannot hold NaN or infinity: "-" rather than a reassuring 0.
            string nan = NonFiniteScan.IsScanned(t.DType) ? c.NaN.ToString(inv) : "-";
            string inf = NonFiniteScan.IsScanned(t.DType) ? c.Infinity.ToString(inv) : "-";
            table.Add(t.Name, DTypes.Name(t.DType), t.ShapeText, (t.ByteLength / 1e6).ToString("F3", inv), nan, inf);
            elements += t.ElementCount;
        }
        table.Write(o);
        var byType = weights.Tensors.GroupBy(t => t.DType).Select(g => $"{DTypes.Name(g.Key)} {g.Count()}");
        o.WriteLine();
        o.WriteLine($"total: {weights.Tensors.Count} tensors ({string.Join(", ", byType)}), {elements.ToString("N0", inv)} parameters, {(weights.TotalBytes / 1e6).ToString("F3", inv)} MB");
        int scanned = weights.Tensors.Count(t => NonFiniteScan.IsScanned(t.DType));
        if (bad.Count == 0)
        {
            o.WriteLine($"finite: all values of the {scanned} float tensors are finite (no NaN, no infinity)");
            return 0;
        }
        o.WriteLine($"NOT FINITE: {bad.Count} of {scanned} float tensors hold NaN or infinite values ({bad.Sum(b => b.Count.NaN).ToString(inv)} NaN, " +
                    $"{bad.Sum(b => b.Count.Infinity).ToString(inv)} infinite); run, merge and generate refuse this model");
        // The exit code and the error line say the same for scripts: the model is not usable.
        var first = bad[0];
        throw new TensorFormatException(weights.FileOf(first.Tensor.Name).Path, first.Tensor.Name,
            $"{first.Count} of {first.Tensor.ShapeText}" + (bad.Count > 1 ? $" (and {bad.Count - 1} more tensor(s) with non-finite values)" : ""));
    }
}
