using System.Text.Json;

namespace CycleQD.Tensors;

/// <summary>
/// All weights of a model, possibly spread over several safetensors shards, behind one name→tensor
/// lookup. Opens a folder (through "model.safetensors.index.json" when present, else
/// "model.safetensors", else the folder's only *.safetensors files) or a single file.
/// Views returned are valid until this object is disposed.
/// </summary>
public sealed class SafetensorsModel : IDisposable
{
    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, SafetensorsFile> _owner;

    /// <summary>The folder or file that was opened.</summary>
    public string Source { get; }

    /// <summary>The opened shard files, in index order.</summary>
    public IReadOnlyList<SafetensorsFile> Files => _files;

    /// <summary>Every tensor, shard by shard in header order.</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    private SafetensorsModel(string source, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> owner, List<TensorInfo> tensors)
    {
        Source = source;
        _files = files;
        _owner = owner;
        Tensors = tensors;
    }

    /// <summary>Opens a model folder or a single .safetensors file, validating every shard.</summary>
    /// <exception cref="TensorFormatException">missing files, a bad index, a corrupt shard, a tensor in two shards.</exception>
    public static SafetensorsModel Open(string path)
    {
        path = Path.GetFullPath(path);
        var files = new List<SafetensorsFile>();
        try
        {
            Dictionary<string, string>? weightMap = null;
            string? index = null;
            if (File.Exists(path))
            {
                files.Add(SafetensorsFile.Open(path));
            }
            else if (Directory.Exists(path))
            {
                index = Path.Combine(path, SafetensorsWriter.IndexFileName);
                if (File.Exists(index))
                {
                    weightMap = ReadIndex(index);
                    foreach (string shard in weightMap.Values.Distinct().Order(StringComparer.Ordinal))
                        files.Add(OpenShard(Path.Combine(path, shard), index));
                }
                else if (File.Exists(Path.Combine(path, SafetensorsWriter.SingleFileName)))
                {
                    files.Add(SafetensorsFile.Open(Path.Combine(path, SafetensorsWriter.SingleFileName)));
                }
                else
                {
                    var found = Directory.GetFiles(path, "*.safetensors").Order(StringComparer.Ordinal).ToList();
                    if (found.Count == 0)
                        throw new TensorFormatException(path, null, "no model.safetensors, model.safetensors.index.json or *.safetensors file in this folder");
                    foreach (var f in found) files.Add(SafetensorsFile.Open(f));
                }
            }
            else
            {
                throw new TensorFormatException(path, null, "no such file or folder");
            }

            var owner = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            var tensors = new List<TensorInfo>();
            foreach (var file in files)
            {
                foreach (var t in file.Tensors)
                {
                    if (!owner.TryAdd(t.Name, file))
                        throw new TensorFormatException(file.Path, t.Name, $"also present in {owner[t.Name].Path}");
                    tensors.Add(t);
                }
            }
            if (weightMap != null)
            {
                foreach (var (name, shard) in weightMap)
                {
                    if (!owner.TryGetValue(name, out var f))
                        throw new TensorFormatException(Path.Combine(path, shard), name, $"listed in {index} but missing from the shard");
                    if (Path.GetFileName(f.Path) != shard)
                        throw new TensorFormatException(f.Path, name, $"{index} says it is in {shard}");
                }
                foreach (var t in tensors)
                    if (!weightMap.ContainsKey(t.Name))
                        throw new TensorFormatException(owner[t.Name].Path, t.Name, $"not listed in {index}");
            }
            return new SafetensorsModel(path, files, owner, tensors);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    private static SafetensorsFile OpenShard(string shardPath, string index)
    {
        if (!File.Exists(shardPath))
            throw new TensorFormatException(shardPath, null, $"shard named in {index} does not exist");
        return SafetensorsFile.Open(shardPath);
    }

    private static Dictionary<string, string> ReadIndex(string index)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(index));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new TensorFormatException(index, null, "no \"weight_map\" object");
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new TensorFormatException(index, p.Name, "weight_map value is not a file name");
                string shard = p.Value.GetString()!;
                if (shard.Contains('/') || shard.Contains('\\') || shard.StartsWith('.'))
                    throw new TensorFormatException(index, p.Name, $"shard name '{shard}' is not a plain file name");
                if (!result.TryAdd(p.Name, shard))
                    throw new TensorFormatException(index, p.Name, "listed twice in weight_map");
            }
            return result;
        }
        catch (JsonException e)
        {
            throw new TensorFormatException(index, null, "invalid JSON: " + e.Message, e);
        }
    }

    /// <summary>True when the model has a tensor called <paramref name="name"/>.</summary>
    public bool Contains(string name) => _owner.ContainsKey(name);

    /// <summary>The shard file that holds <paramref name="name"/>.</summary>
    /// <exception cref="TensorFormatException">no such tensor.</exception>
    public SafetensorsFile FileOf(string name) =>
        _owner.TryGetValue(name, out var f) ? f : throw new TensorFormatException(Source, name, "no such tensor in this model");

    /// <summary>The header entry of <paramref name="name"/>.</summary>
    public TensorInfo GetInfo(string name) => FileOf(name).GetInfo(name);

    /// <summary>Zero-copy view of a tensor's raw bytes; valid until disposal.</summary>
    public ReadOnlySpan<byte> GetBytes(string name) => FileOf(name).GetBytes(name);

    /// <summary>Decodes a weight tensor into a new float32 array.</summary>
    public float[] ReadSingle(string name) => FileOf(name).ReadSingle(name);

    /// <summary>NaN and infinite values of tensor <paramref name="name"/>.</summary>
    /// <exception cref="TensorFormatException">no such tensor.</exception>
    public NonFiniteCount CountNonFinite(string name)
    {
        var file = FileOf(name);
        return file.CountNonFinite(file.GetInfo(name));
    }

    /// <summary>
    /// Scans every float tensor, shard by shard in header order, and throws for the first that holds
    /// a NaN or an infinity: such weights poison every merge, SVD and forward pass they enter.
    /// </summary>
    /// <exception cref="TensorFormatException">names the file and tensor, with the counts and the first bad element.</exception>
    public void ThrowIfNonFinite()
    {
        foreach (var file in _files)
            foreach (var t in file.Tensors)
            {
                var c = file.CountNonFinite(t);
                if (!c.IsFinite)
                    throw new TensorFormatException(file.Path, t.Name, $"{c} of {t.ShapeText} (non-finite weights; check how this model was made)");
            }
    }

    /// <summary>Total bytes of tensor data.</summary>
    public long TotalBytes => Tensors.Sum(t => t.ByteLength);

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
