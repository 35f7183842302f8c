using System.Security.Cryptography;
using System.Text;
using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Tensors;

namespace CycleQD.Runs;

/// <summary>
/// Elites as "&lt;id&gt;.safetensors" in one folder, id = the first 128 bits (hex) of SHA-256 over each
/// tensor's name, dtype, shape and bytes. Identical weights are stored once; files are written
/// atomically, so a crash leaves either no file or a whole one.
/// </summary>
public sealed class SafetensorsEliteStore(string directory) : IEliteStore
{
    /// <summary>The folder holding the elites.</summary>
    public string Directory { get; } = directory;

    /// <summary>File of elite <paramref name="id"/>.</summary>
    public string PathOf(string id) => Path.Combine(Directory, id + ".safetensors");

    /// <summary>The id <see cref="Add"/> gives <paramref name="weights"/>: the first 128 bits (hex) of SHA-256 over each tensor's name, dtype, shape and bytes.</summary>
    private static string IdOf(IComputeBackend backend, IWeightSet weights)
    {
        var specs = weights.Tensors;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (int i = 0; i < specs.Count; i++)
        {
            var s = specs[i];
            hash.AppendData(Encoding.UTF8.GetBytes($"{s.Name}\0{DTypes.Name(s.DType)}\0{s.ShapeText}\0"));
            var bytes = new byte[s.ByteLength];
            backend.Download(weights, i, bytes);
            hash.AppendData(bytes);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset().AsSpan(0, 16));
    }

    /// <inheritdoc/>
    public string Add(IComputeBackend backend, IWeightSet weights)
    {
        var specs = weights.Tensors;
        string id = IdOf(backend, weights);
        string path = PathOf(id);
        if (File.Exists(path)) return id;
        System.IO.Directory.CreateDirectory(Directory);
        var data = specs.Select((s, i) => new TensorData(s.Name, s.DType, s.Shape, stream =>
        {
            var bytes = new byte[s.ByteLength];
            backend.Download(weights, i, bytes);
            stream.Write(bytes);
        })).ToArray();
        SafetensorsWriter.WriteFile(path, data);
        return id;
    }

    /// <inheritdoc/>
    public IWeightSet Open(IComputeBackend backend, string id)
    {
        string path = PathOf(id);
        if (!File.Exists(path)) throw new RunDirectoryException($"elite {id}: {path} is missing");
        using var model = SafetensorsModel.Open(path);
        return backend.Upload(new SafetensorsHostSource(model));
    }

    /// <inheritdoc/>
    public void RemoveAllExcept(IReadOnlySet<string> live)
    {
        if (!System.IO.Directory.Exists(Directory)) return;
        foreach (var f in System.IO.Directory.EnumerateFiles(Directory, "*.safetensors"))
            if (!live.Contains(Path.GetFileNameWithoutExtension(f))) File.Delete(f);
    }

    /// <summary>Ids of the stored elites.</summary>
    public IReadOnlyList<string> Ids() => System.IO.Directory.Exists(Directory)
        ? System.IO.Directory.EnumerateFiles(Directory, "*.safetensors").Select(f => Path.GetFileNameWithoutExtension(f)!).Order(StringComparer.Ordinal).ToArray()
        : [];
}

/// <summary>
/// An <see cref="IHostTensorSource"/> over an open safetensors model (views valid while it is open).
/// Tensors come in file order, or sorted by name (ordinal) when <paramref name="sortByName"/> is set,
/// which is how base and expert models from different writers are put in one order.
/// </summary>
/// <remarks>
/// It is an <see cref="IMappedTensorSource"/>: a backend that keeps weights in host memory (the CUDA
/// backend's streamed mode) opens the same file a second time and keeps that mapping for the weight
/// set's life, so the caller may dispose <paramref name="model"/> right after the upload as before.
/// </remarks>
public sealed class SafetensorsHostSource(SafetensorsModel model, bool sortByName = false) : IMappedTensorSource
{
    /// <inheritdoc/>
    public IReadOnlyList<TensorSpec> Tensors { get; } = (sortByName ? model.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal) : model.Tensors.AsEnumerable())
        .Select(t => new TensorSpec(t.Name, t.DType, t.Shape)).ToArray();

    /// <inheritdoc/>
    public ReadOnlySpan<byte> GetBytes(string name) => model.GetBytes(name);

    /// <inheritdoc/>
    public IMappedTensors OpenMapping() => new Mapping(SafetensorsModel.Open(model.Source), Tensors);

    /// <summary>A second, independently owned mapping of the model's files.</summary>
    private sealed class Mapping(SafetensorsModel mapped, IReadOnlyList<TensorSpec> tensors) : IMappedTensors
    {
        public IReadOnlyList<TensorSpec> Tensors => tensors;

        public ReadOnlySpan<byte> GetBytes(string name) => mapped.GetBytes(name);

        public void Dispose() => mapped.Dispose();
    }
}
