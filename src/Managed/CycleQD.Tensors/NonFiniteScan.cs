using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace CycleQD.Tensors;

/// <summary>How many NaN and infinite values a tensor holds, and where the first of them is.</summary>
/// <param name="NaN">NaN elements.</param>
/// <param name="Infinity">+∞ and −∞ elements.</param>
/// <param name="FirstIndex">Element index of the first non-finite value; −1 when every value is finite.</param>
public readonly record struct NonFiniteCount(long NaN, long Infinity, long FirstIndex)
{
    /// <summary>Every value is finite.</summary>
    public static NonFiniteCount None => new(0, 0, -1);

    /// <summary>True when the tensor holds no NaN and no infinity.</summary>
    public bool IsFinite => NaN == 0 && Infinity == 0;

    /// <summary>NaN plus infinite elements.</summary>
    public long Total => NaN + Infinity;

    /// <summary>E.g. "3 NaN and 1 infinite value(s), the first at element 17"; "finite" when there are none.</summary>
    public override string ToString()
    {
        if (IsFinite) return "finite";
        var inv = CultureInfo.InvariantCulture;
        return $"{NaN.ToString(inv)} NaN and {Infinity.ToString(inv)} infinite value(s), the first at element {FirstIndex.ToString(inv)}";
    }
}

/// <summary>
/// Finds NaN and infinite values in raw tensor data (F32, F16, BF16, F64), as the bits are stored,
/// without converting them. A value is non-finite when its exponent field is all ones: the scan
/// takes max(bits &amp; ~sign) over SIMD vectors and compares it once per chunk with the infinity
/// pattern, so a finite tensor costs one read of its bytes; only a chunk that holds a non-finite
/// value is walked element by element to count them. Chunks of <see cref="ChunkBytes"/> run in
/// parallel, so a memory-mapped 16 GB model is scanned at memory (or page-cache) speed.
/// </summary>
public static unsafe class NonFiniteScan
{
    /// <summary>Bytes per parallel work item (a multiple of every element size).</summary>
    public const int ChunkBytes = 4 << 20;

    /// <summary>True for the dtypes that can hold non-finite values and are scanned (F32, F16, BF16, F64).</summary>
    public static bool IsScanned(DType dtype) => dtype is DType.F32 or DType.F16 or DType.BF16 or DType.F64;

    /// <summary>
    /// Counts the non-finite elements of <paramref name="byteLength"/> bytes at <paramref name="data"/>
    /// (little-endian elements of <paramref name="dtype"/>; no alignment needed). Integer and 8-bit
    /// float dtypes give <see cref="NonFiniteCount.None"/>. The memory must stay valid for the call.
    /// </summary>
    /// <exception cref="ArgumentException">byteLength is negative or not a multiple of the element size.</exception>
    public static NonFiniteCount Count(byte* data, long byteLength, DType dtype)
    {
        if (!IsScanned(dtype)) return NonFiniteCount.None;
        int size = DTypes.SizeOf(dtype);
        if (byteLength < 0 || byteLength % size != 0)
            throw new ArgumentException($"{byteLength} bytes do not hold whole {DTypes.Name(dtype)} elements", nameof(byteLength));
        if (byteLength <= ChunkBytes) return CountChunk(data, byteLength / size, dtype);

        long chunks = (byteLength + ChunkBytes - 1) / ChunkBytes;
        var results = new NonFiniteCount[chunks];
        nint basePtr = (nint)data;
        Parallel.For(0L, chunks, c =>
        {
            long start = c * ChunkBytes;
            long bytes = Math.Min(ChunkBytes, byteLength - start);
            results[c] = CountChunk((byte*)basePtr + start, bytes / size, dtype);
        });
        long nan = 0, inf = 0, first = -1;
        long perChunk = ChunkBytes / size;
        for (long c = 0; c < chunks; c++)
        {
            var r = results[c];
            nan += r.NaN;
            inf += r.Infinity;
            if (first < 0 && r.FirstIndex >= 0) first = c * perChunk + r.FirstIndex;
        }
        return new NonFiniteCount(nan, inf, first);
    }

    /// <summary>Counts the non-finite elements of <paramref name="data"/> (raw bytes of <paramref name="dtype"/>).</summary>
    /// <exception cref="ArgumentException">the length is not a multiple of the element size.</exception>
    public static NonFiniteCount Count(ReadOnlySpan<byte> data, DType dtype)
    {
        fixed (byte* p = data) return Count(p, data.Length, dtype);
    }

    /// <summary>Counts the non-finite values of <paramref name="values"/>.</summary>
    public static NonFiniteCount Count(ReadOnlySpan<float> values)
    {
        fixed (float* p = values) return Count((byte*)p, (long)values.Length * sizeof(float), DType.F32);
    }

    private static NonFiniteCount CountChunk(byte* p, long elements, DType dtype) => dtype switch
    {
        DType.F32 => CountBits<uint>(p, elements, 0x7FFF_FFFFu, 0x7F80_0000u),
        DType.F16 => CountBits<ushort>(p, elements, 0x7FFF, 0x7C00),
        DType.BF16 => CountBits<ushort>(p, elements, 0x7FFF, 0x7F80),
        DType.F64 => CountBits<ulong>(p, elements, 0x7FFF_FFFF_FFFF_FFFFul, 0x7FF0_0000_0000_0000ul),
        _ => NonFiniteCount.None,
    };

    /// <summary>
    /// With the sign cleared, a value's bits are ≥ the infinity pattern exactly when it is not finite
    /// (equal: ±∞, greater: NaN), so the largest cleared pattern tells whether a chunk is all finite.
    /// </summary>
    private static NonFiniteCount CountBits<T>(byte* p, long elements, T absMask, T infinity)
        where T : unmanaged, IBinaryInteger<T>, IUnsignedNumber<T>
    {
        T* t = (T*)p;
        int w = Vector<T>.Count;
        var mask = new Vector<T>(absMask);
        Vector<T> m0 = Vector<T>.Zero, m1 = m0, m2 = m0, m3 = m0;
        long i = 0;
        // Four independent accumulators keep several loads in flight.
        for (; i <= elements - 4L * w; i += 4L * w)
        {
            m0 = Vector.Max(m0, Vector.Load(t + i) & mask);
            m1 = Vector.Max(m1, Vector.Load(t + i + w) & mask);
            m2 = Vector.Max(m2, Vector.Load(t + i + 2 * w) & mask);
            m3 = Vector.Max(m3, Vector.Load(t + i + 3 * w) & mask);
        }
        var m = Vector.Max(Vector.Max(m0, m1), Vector.Max(m2, m3));
        T max = T.Zero;
        for (int j = 0; j < w; j++) max = T.Max(max, m[j]);
        for (; i < elements; i++) max = T.Max(max, Unsafe.ReadUnaligned<T>(t + i) & absMask);
        if (max < infinity) return NonFiniteCount.None;

        long nan = 0, inf = 0, first = -1;
        for (long e = 0; e < elements; e++)
        {
            T a = Unsafe.ReadUnaligned<T>(t + e) & absMask;
            if (a < infinity) continue;
            if (first < 0) first = e;
            if (a == infinity) inf++; else nan++;
        }
        return new NonFiniteCount(nan, inf, first);
    }
}
