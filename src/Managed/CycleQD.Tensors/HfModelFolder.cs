namespace CycleQD.Tensors;

/// <summary>
/// A Hugging Face model folder: config.json, the safetensors weights (single or sharded) and the
/// tokenizer files that travel with them.
/// </summary>
public sealed class HfModelFolder
{
    /// <summary>Tokenizer and generation files recognised in a model folder, in the order they are reported.</summary>
    public static readonly IReadOnlyList<string> TokenizerFileNames =
    [
        "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
        "generation_config.json", "chat_template.jinja",
    ];

    /// <summary>Absolute path of the folder.</summary>
    public string Directory { get; }

    /// <summary>Path of config.json.</summary>
    public string ConfigPath => Path.Combine(Directory, "config.json");

    /// <summary>Parsed config.json.</summary>
    public LlamaConfig Config { get; }

    /// <summary>Tokenizer/generation files present in the folder (absolute paths).</summary>
    public IReadOnlyList<string> TokenizerFiles { get; }

    private HfModelFolder(string directory, LlamaConfig config, IReadOnlyList<string> tokenizerFiles)
    {
        Directory = directory;
        Config = config;
        TokenizerFiles = tokenizerFiles;
    }

    /// <summary>Reads the folder's config.json and locates its tokenizer files.</summary>
    /// <exception cref="TensorFormatException">no such folder, no config.json, or an invalid config.</exception>
    public static HfModelFolder Open(string directory)
    {
        directory = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(directory))
            throw new TensorFormatException(directory, null, File.Exists(directory) ? "is a file; expected a model folder" : "no such folder");
        string configPath = Path.Combine(directory, "config.json");
        if (!File.Exists(configPath)) throw new TensorFormatException(configPath, null, "missing (not a Hugging Face model folder?)");
        var config = LlamaConfig.Parse(File.ReadAllText(configPath), configPath);
        var tok = TokenizerFileNames.Select(n => Path.Combine(directory, n)).Where(File.Exists).ToList();
        return new HfModelFolder(directory, config, tok);
    }

    /// <summary>Path of a tokenizer file if the folder has it.</summary>
    public string? FindFile(string name)
    {
        string p = Path.Combine(Directory, name);
        return File.Exists(p) ? p : null;
    }

    /// <summary>Opens the folder's weights (validating every shard).</summary>
    public SafetensorsModel OpenWeights() => SafetensorsModel.Open(Directory);
}
