using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace CycleQD.Tensors;

/// <summary>
/// A memory-mapped, validated safetensors file. Tensor data is exposed as zero-copy views into the
/// mapping; those views are valid only until this object is disposed.
/// </summary>
/// <remarks>
/// Layout: an unsigned 64-bit little-endian header length N, N bytes of UTF-8 JSON (a map from
/// tensor name to {dtype, shape, data_offsets} plus an optional "__metadata__" string map), then the
/// data section. Offsets are relative to the data section. Every check of the format is made when
/// the file is opened, so a later view never reads outside the file.
/// </remarks>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>Largest header accepted (the format's own limit).</summary>
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly long _dataStart;
    private readonly Dictionary<string, TensorInfo> _byName;
    private bool _disposed;

    /// <summary>Full path of the file.</summary>
    public string Path { get; }

    /// <summary>Size of the file in bytes.</summary>
    public long FileLength { get; }

    /// <summary>Tensors in header order.</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    /// <summary>The "__metadata__" map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafetensorsFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr,
        long fileLength, long dataStart, List<TensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _base = basePtr;
        FileLength = fileLength;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
        _byName = new Dictionary<string, TensorInfo>(tensors.Count, StringComparer.Ordinal);
        foreach (var t in tensors) _byName[t.Name] = t;
    }

    /// <summary>Opens and validates <paramref name="path"/>.</summary>
    /// <exception cref="TensorFormatException">the file is missing, unreadable or not valid safetensors.</exception>
    public static SafetensorsFile Open(string path)
    {
        path = System.IO.Path.GetFullPath(path);
        if (!File.Exists(path)) throw new TensorFormatException(path, null, "file not found");
        long length;
        try { length = new FileInfo(path).Length; }
        catch (Exception e) { throw new TensorFormatException(path, null, "cannot read: " + e.Message, e); }
        if (length < 8)
            throw new TensorFormatException(path, null, $"file is {length} bytes, too short for a safetensors header (truncated?)");

        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        byte* ptr = null;
        try
        {
            map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref ptr);
            ptr += view.PointerOffset;

            ulong headerLength = *(ulong*)ptr; // safetensors is little-endian; so is every platform we run on
            if (headerLength > (ulong)(length - 8))
                throw new TensorFormatException(path, null,
                    $"header length {headerLength} runs past the end of the file ({length} bytes; truncated or not safetensors)");
            if (headerLength > MaxHeaderBytes)
                throw new TensorFormatException(path, null, $"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
            var header = new ReadOnlySpan<byte>(ptr + 8, (int)headerLength);
            long dataStart = 8 + (long)headerLength;
            var (tensors, metadata) = ParseHeader(path, header, length - dataStart);
            return new SafetensorsFile(path, map, view, ptr - view.PointerOffset, length, dataStart, tensors, metadata);
        }
        catch
        {
            if (ptr != null) view!.SafeMemoryMappedViewHandle.ReleasePointer();
            view?.Dispose();
            map?.Dispose();
            throw;
        }
    }

    /// <summary>True when the file holds a tensor called <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The header entry of <paramref name="name"/>.</summary>
    /// <exception cref="TensorFormatException">no such tensor.</exception>
    public TensorInfo GetInfo(string name) =>
        _byName.TryGetValue(name, out var info) ? info : throw new TensorFormatException(Path, name, "no such tensor in this file");

    /// <summary>
    /// Zero-copy view of a tensor's raw bytes (little-endian elements of its dtype). Valid until
    /// the file is disposed.
    /// </summary>
    /// <exception cref="TensorFormatException">no such tensor, or it is larger than a span can address (2 GiB); use <see cref="GetPointer"/>.</exception>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        var info = GetInfo(name);
        if (info.ByteLength > int.MaxValue)
            throw new TensorFormatException(Path, name, $"{info.ByteLength} bytes exceed what one span can address; read it through GetPointer");
        return new ReadOnlySpan<byte>(GetPointer(info), (int)info.ByteLength);
    }

    /// <summary>Zero-copy typed view of a tensor (T must match the dtype's size). Valid until disposal.</summary>
    public ReadOnlySpan<T> GetSpan<T>(string name) where T : unmanaged
    {
        var info = GetInfo(name);
        if (sizeof(T) != DTypes.SizeOf(info.DType))
            throw new TensorFormatException(Path, name, $"dtype {DTypes.Name(info.DType)} cannot be viewed as {typeof(T).Name}");
        return MemoryMarshal.Cast<byte, T>(GetBytes(name));
    }

    /// <summary>Address of a tensor's first byte in the mapping; valid until disposal.</summary>
    public byte* GetPointer(TensorInfo info)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _base + _dataStart + info.Begin;
    }

    /// <summary>NaN and infinite values of a tensor, counted on the mapped bytes (see <see cref="NonFiniteScan"/>).</summary>
    public NonFiniteCount CountNonFinite(TensorInfo info) => NonFiniteScan.Count(GetPointer(info), info.ByteLength, info.DType);

    /// <summary>Decodes a weight tensor (F32, F16 or BF16) into a new float32 array.</summary>
    public float[] ReadSingle(string name)
    {
        var info = GetInfo(name);
        if (!DTypes.IsWeightType(info.DType))
            throw new TensorFormatException(Path, name, $"dtype {DTypes.Name(info.DType)} is not a weight type (F32, F16, BF16)");
        var result = new float[checked((int)info.ElementCount)];
        DTypeConversion.ToSingle(GetBytes(name), info.DType, result);
        return result;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }

    internal static (List<TensorInfo> Tensors, Dictionary<string, string> Metadata) ParseHeader(
        string path, ReadOnlySpan<byte> header, long dataLength)
    {
        var tensors = new List<TensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(header, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
        try
        {
            // The format pads the header with trailing spaces; the JSON reader skips whitespace.
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                throw new TensorFormatException(path, null, "invalid header: not a JSON object");
            while (true)
            {
                Read(ref reader, path);
                if (reader.TokenType == JsonTokenType.EndObject) break;
                string name = reader.GetString()!;
                if (!seen.Add(name))
                    throw new TensorFormatException(path, name, "duplicate name in the header");
                Read(ref reader, path);
                if (name == "__metadata__")
                    ReadMetadata(ref reader, path, metadata);
                else
                    tensors.Add(ReadEntry(ref reader, path, name, dataLength));
            }
            if (reader.Read())
                throw new TensorFormatException(path, null, "invalid header: data after the JSON object");
        }
        catch (JsonException e)
        {
            throw new TensorFormatException(path, null, $"invalid JSON header: {e.Message}", e);
        }

        // Ranges must not overlap: sort by start and compare neighbours.
        var sorted = tensors.Where(t => t.ByteLength > 0).OrderBy(t => t.Begin).ToList();
        for (int i = 1; i < sorted.Count; i++)
        {
            if (sorted[i].Begin < sorted[i - 1].End)
                throw new TensorFormatException(path, sorted[i].Name,
                    $"data range [{sorted[i].Begin}, {sorted[i].End}) overlaps tensor '{sorted[i - 1].Name}' [{sorted[i - 1].Begin}, {sorted[i - 1].End})");
        }
        return (tensors, metadata);
    }

    private static void Read(ref Utf8JsonReader reader, string path)
    {
        if (!reader.Read()) throw new TensorFormatException(path, null, "invalid JSON header: unexpected end");
    }

    private static void ReadMetadata(ref Utf8JsonReader reader, string path, Dictionary<string, string> metadata)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new TensorFormatException(path, null, "invalid header: __metadata__ is not an object");
        while (true)
        {
            Read(ref reader, path);
            if (reader.TokenType == JsonTokenType.EndObject) return;
            string key = reader.GetString()!;
            Read(ref reader, path);
            if (reader.TokenType != JsonTokenType.String)
                throw new TensorFormatException(path, null, $"invalid header: __metadata__ value '{key}' is not a string");
            if (!metadata.TryAdd(key, reader.GetString()!))
                throw new TensorFormatException(path, null, $"invalid header: duplicate __metadata__ key '{key}'");
        }
    }

    private static TensorInfo ReadEntry(ref Utf8JsonReader reader, string path, string name, long dataLength)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new TensorFormatException(path, name, "header entry is not an object");
        string? dtypeText = null;
        List<long>? shape = null;
        List<long>? offsets = null;
        while (true)
        {
            Read(ref reader, path);
            if (reader.TokenType == JsonTokenType.EndObject) break;
            string key = reader.GetString()!;
            Read(ref reader, path);
            switch (key)
            {
                case "dtype":
                    if (reader.TokenType != JsonTokenType.String)
                        throw new TensorFormatException(path, name, "dtype is not a string");
                    dtypeText = reader.GetString();
                    break;
                case "shape":
                    shape = ReadLongArray(ref reader, path, name, key);
                    break;
                case "data_offsets":
                    offsets = ReadLongArray(ref reader, path, name, key);
                    break;
                default:
                    reader.Skip();
                    break;
            }
        }
        if (dtypeText is null) throw new TensorFormatException(path, name, "missing dtype");
        if (shape is null) throw new TensorFormatException(path, name, "missing shape");
        if (offsets is null) throw new TensorFormatException(path, name, "missing data_offsets");
        if (!DTypes.TryParse(dtypeText, out var dtype))
            throw new TensorFormatException(path, name, $"unknown dtype '{dtypeText}'");
        if (offsets.Count != 2) throw new TensorFormatException(path, name, "data_offsets must hold exactly two numbers");
        long begin = offsets[0], end = offsets[1];
        if (begin > end) throw new TensorFormatException(path, name, $"data_offsets [{begin}, {end}] end before they begin");
        if (end > dataLength)
            throw new TensorFormatException(path, name,
                $"data range [{begin}, {end}) lies outside the data section ({dataLength} bytes; file truncated?)");
        var info = new TensorInfo(name, dtype, shape.ToArray(), begin, end);
        long expected;
        try { expected = checked(info.ElementCount * DTypes.SizeOf(dtype)); }
        catch (OverflowException) { throw new TensorFormatException(path, name, $"shape {info.ShapeText} is too large"); }
        if (expected != end - begin)
            throw new TensorFormatException(path, name,
                $"shape {info.ShapeText} of {DTypes.Name(dtype)} needs {expected} bytes but data_offsets give {end - begin}");
        return info;
    }

    private static List<long> ReadLongArray(ref Utf8JsonReader reader, string path, string name, string key)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
            throw new TensorFormatException(path, name, $"{key} is not an array");
        var list = new List<long>();
        while (true)
        {
            Read(ref reader, path);
            if (reader.TokenType == JsonTokenType.EndArray) return list;
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long v) || v < 0)
                throw new TensorFormatException(path, name, $"{key} must hold non-negative integers");
            list.Add(v);
        }
    }
}
