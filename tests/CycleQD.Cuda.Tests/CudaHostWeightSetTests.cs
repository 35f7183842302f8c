using System.Runtime.InteropServices;
using CycleQD.Core.Compute;
using CycleQD.Cuda.Backend;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Tests;

/// <summary>How a streamed-mode upload keeps a source's bytes: a mapping handed over, or a copy. No GPU needed: the set only holds host memory.</summary>
public sealed class CudaHostWeightSetTests
{
    /// <summary>A source over native memory that counts the mappings it hands out and whether they were closed.</summary>
    private sealed unsafe class FakeMappedSource : IMappedTensorSource, IDisposable
    {
        private readonly Dictionary<string, (nint Address, int Length)> _data = [];
        private readonly List<TensorSpec> _specs = [];

        public void Add(TensorSpec spec, byte[] bytes)
        {
            nint p = (nint)NativeMemory.AlignedAlloc((nuint)bytes.Length, 64);
            bytes.CopyTo(new Span<byte>((void*)p, bytes.Length));
            _data[spec.Name] = (p, bytes.Length);
            _specs.Add(spec);
        }

        public IReadOnlyList<TensorSpec> Tensors => _specs;
        public ReadOnlySpan<byte> GetBytes(string name) => new((void*)_data[name].Address, _data[name].Length);
        public nint AddressOf(string name) => _data[name].Address;
        public List<Mapping> Opened { get; } = [];

        public IMappedTensors OpenMapping()
        {
            var m = new Mapping(this);
            Opened.Add(m);
            return m;
        }

        public void Dispose()
        {
            foreach (var (p, _) in _data.Values) NativeMemory.AlignedFree((void*)p);
        }

        public sealed class Mapping(FakeMappedSource owner) : IMappedTensors
        {
            public bool Disposed { get; private set; }
            public IReadOnlyList<TensorSpec> Tensors => owner.Tensors;
            public ReadOnlySpan<byte> GetBytes(string name) => owner.GetBytes(name);
            public void Dispose() => Disposed = true;
        }
    }

    private static byte[] Bytes(TensorSpec spec, float start)
    {
        var values = Enumerable.Range(0, (int)spec.ElementCount).Select(i => start + i * 0.5f).ToArray();
        var bytes = new byte[spec.ByteLength];
        DTypeConversion.FromSingle(values, spec.DType, bytes);
        return bytes;
    }

    [Fact]
    public void MappedSource_IsKeptMappedForTheSetsLife_NotCopied()
    {
        using var source = new FakeMappedSource();
        var a = new TensorSpec("a", DType.BF16, [3, 5]);
        var b = new TensorSpec("b", DType.F32, [7]);
        source.Add(a, Bytes(a, 1));
        source.Add(b, Bytes(b, -2));
        var set = CudaHostWeightSet.Create(null!, source);
        Assert.True(set.IsMapped);
        Assert.Equal(WeightMemoryKind.Host, set.Kind);
        var mapping = Assert.Single(source.Opened);
        Assert.Equal(source.AddressOf("a"), set.TensorAddress(0));
        Assert.Equal(source.AddressOf("b"), set.TensorAddress(1));
        Assert.False(mapping.Disposed);
        set.Dispose();
        Assert.True(mapping.Disposed);
        Assert.Throws<ObjectDisposedException>(() => set.TensorAddress(0));
    }

    [Fact]
    public unsafe void PlainSource_IsCopied_AndLaterChangesToItDoNotShow()
    {
        var spec = new TensorSpec("w", DType.F16, [4, 9]);
        var bytes = Bytes(spec, 3);
        var expected = bytes.ToArray();
        using var set = CudaHostWeightSet.Create(null!, new InMemoryTensorSource().Add(spec, bytes));
        Assert.False(set.IsMapped);
        Array.Fill(bytes, (byte)0);
        Assert.Equal(expected, new ReadOnlySpan<byte>((void*)set.TensorAddress(0), expected.Length).ToArray());
        Assert.Equal(0, set.TensorAddress(0) % 64);
    }

    [Fact]
    public void MappedSourceWithAShortTensor_IsRefusedNamingIt_AndTheMappingIsClosed()
    {
        using var source = new FakeMappedSource();
        var spec = new TensorSpec("layers.0.weight", DType.F32, [10]);
        source.Add(spec, new byte[12]);
        var e = Assert.Throws<ArgumentException>(() => CudaHostWeightSet.Create(null!, source));
        Assert.Contains("tensor 'layers.0.weight': source has 12 bytes, F32 [10] needs 40", e.Message);
        Assert.True(Assert.Single(source.Opened).Disposed);
    }
}
