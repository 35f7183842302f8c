using System.CommandLine;
using System.Globalization;
using CycleQD.Tensors;

namespace CycleQD.Cli.Commands.Inspect;

/// <summary>`cycleqd inspect MODEL`: config summary and a table of tensors.</summary>
internal static class InspectCommand
{
    private static readonly Argument<string> Model = new("MODEL")
    {
        Description = "A Hugging Face model folder (config.json + safetensors) or a single .safetensors file.",
    };

    public static Command Create()
    {
        var cmd = new Command("inspect", "Show a model's config and tensors (name, dtype, shape, MB) and validate its weight files.");
        cmd.Arguments.Add(Model);
        cmd.SetAction(parse => Run(parse.GetRequiredValue(Model), parse.InvocationConfiguration.Output));
        return cmd;
    }

    internal static int Run(string path, TextWriter o)
    {
        var inv = CultureInfo.InvariantCulture;
        string full = Path.GetFullPath(path);
        HfModelFolder? folder = Directory.Exists(full) ? HfModelFolder.Open(full) : null;
        using var weights = SafetensorsModel.Open(full);

        o.WriteLine($"model: {full}");
        if (folder != null)
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

        var table = new TextTable("tensor", "dtype", "shape", "MB").AlignRight(3);
        long elements = 0;
        foreach (var t in weights.Tensors)
        {
            table.Add(t.Name, DTypes.Name(t.DType), t.ShapeText, (t.ByteLength / 1e6).ToString("F3", inv));
            elements += t.ElementCount;
        }
        table.Write(o);
        var byType = weights.Tensors.GroupBy(t => t.DType).Select(g => $"{DTypes.Name(g.Key)} {g.Count()}");
        o.WriteLine();
        o.WriteLine($"total: {weights.Tensors.Count} tensors ({string.Join(", ", byType)}), {elements.ToString("N0", inv)} parameters, {(weights.TotalBytes / 1e6).ToString("F3", inv)} MB");
        return 0;
    }
}
