using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using CycleQD.Tensors;

namespace CycleQD.Runs.Merging;

/// <summary>
/// Writes a ready Hugging Face model folder: the weights (one model.safetensors, or shards plus
/// model.safetensors.index.json when they exceed the shard size), config.json and the tokenizer
/// files copied from a source folder, and a README.md model card. Every file is written under a
/// temporary name and renamed into place; the card is written last, so a folder with a card is complete.
/// </summary>
public static class HfFolderOutput
{
    /// <summary>safetensors metadata Hugging Face loaders expect ("format": "pt").</summary>
    public static readonly IReadOnlyDictionary<string, string> WeightMetadata = new Dictionary<string, string> { ["format"] = "pt" };

    /// <summary>
    /// Writes a folder prepared by <see cref="Prepare"/> with <paramref name="write"/>; if that fails,
    /// removes what it wrote (the folder too when it did not exist before), so a failed command
    /// leaves no half-written model behind and can be run again with the same --out.
    /// </summary>
    public static T WriteOrClean<T>(string directory, Func<string, T> write)
    {
        bool existed = Directory.Exists(directory);
        string dir = Prepare(directory);
        try
        {
            return write(dir);
        }
        catch
        {
            try
            {
                if (existed)
                    foreach (var e in new DirectoryInfo(dir).EnumerateFileSystemInfos())
                        if (e is DirectoryInfo d) d.Delete(recursive: true); else e.Delete();
                else Directory.Delete(dir, recursive: true);
            }
            catch (IOException) { }
            throw;
        }
    }

    /// <summary>Refuses an output folder that is a file or already holds something; creates it otherwise.</summary>
    /// <exception cref="RunDirectoryException">the folder is a file or not empty.</exception>
    public static string Prepare(string directory)
    {
        directory = Path.GetFullPath(directory);
        if (File.Exists(directory)) throw new RunDirectoryException($"--out {directory}: is a file");
        if (Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any())
            throw new RunDirectoryException($"--out {directory}: exists and is not empty (choose a new folder)");
        Directory.CreateDirectory(directory);
        return directory;
    }

    /// <summary>
    /// Writes the folder: weights from <paramref name="tensors"/> (streamed one tensor at a time),
    /// config.json and the companion files (tokenizer, preprocessor settings) of <paramref name="source"/>, then <paramref name="modelCard"/> as README.md.
    /// When every tensor is stored as one dtype that differs from the source's, config.json's torch_dtype is updated.
    /// </summary>
    /// <returns>The files written, weights first and README.md last.</returns>
    public static IReadOnlyList<string> Write(string directory, Families.ModelFolderFiles source, IReadOnlyList<TensorData> tensors,
        long maxShardBytes, string modelCard)
    {
        var written = new List<string>(SafetensorsWriter.WriteModel(directory, tensors, maxShardBytes, WeightMetadata));
        string config = Path.Combine(directory, "config.json");
        var dtypes = tensors.Select(t => t.DType).Distinct().ToArray();
        SafetensorsWriter.WriteAtomically(config, fs => fs.Write(ConfigWithDType(File.ReadAllBytes(source.ConfigPath), dtypes.Length == 1 ? dtypes[0] : null)));
        written.Add(config);
        foreach (string file in source.CompanionFiles)
        {
            string dst = Path.Combine(directory, Path.GetFileName(file));
            SafetensorsWriter.WriteAtomically(dst, fs => { using var src = File.OpenRead(file); src.CopyTo(fs); });
            written.Add(dst);
        }
        string readme = Path.Combine(directory, "README.md");
        SafetensorsWriter.WriteAtomically(readme, fs => fs.Write(Encoding.UTF8.GetBytes(modelCard)));
        written.Add(readme);
        return written;
    }

    private static byte[] ConfigWithDType(byte[] config, DType? dtype)
    {
        string? torch = dtype switch { DType.F32 => "float32", DType.F16 => "float16", DType.BF16 => "bfloat16", _ => null };
        if (torch is null) return config;
        var node = JsonNode.Parse(config) as JsonObject;
        if (node is null || node["torch_dtype"]?.GetValue<string>() == torch) return config;
        node["torch_dtype"] = torch;
        return Encoding.UTF8.GetBytes(node.ToJsonString(Tensors.ReadableJson.Indented) + "\n");
    }

    /// <summary>SHA-256 (hex) of each weight file of a model folder or file, by file name.</summary>
    public static IReadOnlyList<(string File, string Sha256)> WeightFileHashes(string modelPath)
    {
        using var model = SafetensorsModel.Open(modelPath);
        return model.Files.Select(f =>
        {
            using var s = File.OpenRead(f.Path);
            return (Path.GetFileName(f.Path), Convert.ToHexStringLower(SHA256.HashData(s)));
        }).ToArray();
    }
}
