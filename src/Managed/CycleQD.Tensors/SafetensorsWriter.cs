using System.Text.Json;

namespace CycleQD.Tensors;

/// <summary>
/// Writes safetensors files and sharded model folders. Every file is written to a temporary name
/// in the same folder and renamed into place, so a crash never leaves a half-written file under
/// the final name; a sharded folder's index is written last.
/// </summary>
public static class SafetensorsWriter
{
    /// <summary>File name of a single-file model.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>File name of the index of a sharded model.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>Default largest shard, as Hugging Face writes them (5 GB).</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    /// <summary>Writes one safetensors file atomically.</summary>
    /// <param name="path">Destination; replaced if it exists.</param>
    /// <param name="tensors">Tensors in file order; names must be unique.</param>
    /// <param name="metadata">Optional "__metadata__" entries.</param>
    public static void WriteFile(string path, IReadOnlyList<TensorData> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        path = Path.GetFullPath(path);
        byte[] header = BuildHeader(tensors, metadata);
        WriteAtomically(path, stream =>
        {
            Span<byte> len = stackalloc byte[8];
            BitConverter.TryWriteBytes(len, (ulong)header.Length);
            stream.Write(len);
            stream.Write(header);
            foreach (var t in tensors)
            {
                long before = stream.Position;
                t.WriteTo(stream);
                long written = stream.Position - before;
                if (written != t.ByteLength)
                    throw new InvalidOperationException($"{path}: tensor '{t.Name}': wrote {written} bytes, expected {t.ByteLength}");
            }
        });
    }

    /// <summary>
    /// Writes a model into <paramref name="directory"/>: one "model.safetensors" when everything
    /// fits in <paramref name="maxShardBytes"/>, else "model-0000i-of-0000n.safetensors" shards plus
    /// "model.safetensors.index.json" (weight_map and metadata.total_size). Shards of an earlier
    /// write that the new one does not use are removed after the index is in place.
    /// </summary>
    /// <returns>The files written, in order (the index last when there is one).</returns>
    public static IReadOnlyList<string> WriteModel(string directory, IReadOnlyList<TensorData> tensors,
        long maxShardBytes = DefaultMaxShardBytes, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxShardBytes, 1);
        Directory.CreateDirectory(directory);
        directory = Path.GetFullPath(directory);

        var shards = new List<List<TensorData>> { new() };
        long current = 0;
        foreach (var t in tensors)
        {
            if (current > 0 && current + t.ByteLength > maxShardBytes)
            {
                shards.Add(new List<TensorData>());
                current = 0;
            }
            shards[^1].Add(t);
            current += t.ByteLength;
        }

        var written = new List<string>();
        if (shards.Count == 1)
        {
            string file = Path.Combine(directory, SingleFileName);
            WriteFile(file, shards[0], metadata);
            written.Add(file);
        }
        else
        {
            var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
            for (int i = 0; i < shards.Count; i++)
            {
                string name = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
                string file = Path.Combine(directory, name);
                WriteFile(file, shards[i], metadata);
                written.Add(file);
                foreach (var t in shards[i]) weightMap[t.Name] = name;
            }
            string index = Path.Combine(directory, IndexFileName);
            long total = tensors.Sum(t => t.ByteLength);
            WriteAtomically(index, stream =>
            {
                using var w = new Utf8JsonWriter(stream, ReadableJson.Writer(indented: true));
                w.WriteStartObject();
                w.WriteStartObject("metadata");
                w.WriteNumber("total_size", total);
                w.WriteEndObject();
                w.WriteStartObject("weight_map");
                foreach (var (k, v) in weightMap) w.WriteString(k, v);
                w.WriteEndObject();
                w.WriteEndObject();
            });
            written.Add(index);
        }
        RemoveStaleWeightFiles(directory, written);
        return written;
    }

    private static void RemoveStaleWeightFiles(string directory, List<string> keep)
    {
        var keepSet = new HashSet<string>(keep, StringComparer.Ordinal);
        foreach (var f in Directory.EnumerateFiles(directory, "model*.safetensors*"))
        {
            string name = Path.GetFileName(f);
            bool ours = name == SingleFileName || name == IndexFileName ||
                        (name.StartsWith("model-", StringComparison.Ordinal) && name.EndsWith(".safetensors", StringComparison.Ordinal));
            if (ours && !keepSet.Contains(f)) File.Delete(f);
        }
    }

    internal static byte[] BuildHeader(IReadOnlyList<TensorData> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in tensors)
            {
                if (!names.Add(t.Name)) throw new ArgumentException($"tensor '{t.Name}' appears twice", nameof(tensors));
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", DTypes.Name(t.DType));
                w.WriteStartArray("shape");
                foreach (long d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + t.ByteLength);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += t.ByteLength;
            }
            w.WriteEndObject();
        }
        // Pad with spaces so the data section starts 8-byte aligned (8-byte length prefix + header).
        int pad = (int)((8 - ms.Length % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    /// <summary>Runs <paramref name="write"/> on a temporary file beside <paramref name="path"/>, flushes it to disk and renames it into place.</summary>
    public static void WriteAtomically(string path, Action<FileStream> write)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }
}
