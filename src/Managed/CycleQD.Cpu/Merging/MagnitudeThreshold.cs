namespace CycleQD.Cpu.Merging;

/// <summary>
/// Finds the k-th largest magnitude of a task vector τ = expert − base that may span many tensors
/// (a whole model), without holding it in memory: two streaming passes over the data, each
/// building a 65,536-bucket histogram. A non-negative float32 orders like its bit pattern, so the
/// first pass counts the upper 16 bits of |τ| and finds the bucket that holds the k-th largest; the
/// second counts the lower 16 bits of the entries in that bucket. The result is exact.
/// <para>Use: <see cref="CountCoarse"/> over every tensor, then, if <see cref="NeedsFinePass"/>,
/// <see cref="CountFine"/> over every tensor with the same data, then read <see cref="Threshold"/>
/// and <see cref="TiesKept"/> (or both as <see cref="Cut"/>). NaN entries are not counted.</para>
/// </summary>
public sealed class MagnitudeThreshold
{
    private const uint NaNBits = 0x7F80_0000u;
    private readonly long _keep;
    private readonly long[] _coarse = new long[65536];
    private long[]? _fine;
    private int _bucket = -1;
    private long _aboveBucket;
    private long _counted;
    private float? _threshold;
    private long _tiesKept;

    /// <summary>A selection of the <paramref name="keep"/> largest magnitudes (≥ 0).</summary>
    public MagnitudeThreshold(long keep)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(keep);
        _keep = keep;
    }

    /// <summary>k = ⌊density · n⌋, the number of entries a density keeps out of <paramref name="count"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">density outside [0, 1].</exception>
    public static long KeepCount(double density, long count)
    {
        if (!(density >= 0 && density <= 1)) throw new ArgumentOutOfRangeException(nameof(density), density, "a density must be in [0, 1]");
        // The product is rounded to the nearest double; a value like 0.2 · 260032 = 52006.4 floors as intended.
        return (long)Math.Floor(density * count);
    }

    /// <summary>First pass: adds the entries of one tensor (or chunk) of τ = expert − base.</summary>
    public void CountCoarse(ReadOnlySpan<float> baseWeights, ReadOnlySpan<float> expert)
    {
        if (_bucket >= 0 || _threshold.HasValue) throw new InvalidOperationException("the coarse pass is already finished");
        if (expert.Length != baseWeights.Length) throw new ArgumentException($"expert has {expert.Length} elements, base {baseWeights.Length}", nameof(expert));
        for (int j = 0; j < expert.Length; j++)
        {
            uint bits = AbsBits(expert[j] - baseWeights[j]);
            if (bits > NaNBits) continue;
            _coarse[bits >> 16]++;
            _counted++;
        }
    }

    /// <summary>True once the coarse pass has been read and a second pass is needed to pin the threshold down.</summary>
    public bool NeedsFinePass
    {
        get
        {
            FinishCoarse();
            return !_threshold.HasValue;
        }
    }

    /// <summary>Second pass: the same entries again, in any order.</summary>
    public void CountFine(ReadOnlySpan<float> baseWeights, ReadOnlySpan<float> expert)
    {
        if (!NeedsFinePass) throw new InvalidOperationException("no fine pass is needed");
        if (expert.Length != baseWeights.Length) throw new ArgumentException($"expert has {expert.Length} elements, base {baseWeights.Length}", nameof(expert));
        _fine ??= new long[65536];
        uint hi = (uint)_bucket;
        for (int j = 0; j < expert.Length; j++)
        {
            uint bits = AbsBits(expert[j] - baseWeights[j]);
            if (bits > NaNBits || bits >> 16 != hi) continue;
            _fine[bits & 0xFFFF]++;
        }
    }

    /// <summary>
    /// The smallest magnitude kept: |τ| ≥ Threshold selects the k largest (and any exact ties of the
    /// k-th). NaN when k = 0 (a comparison with NaN is false, so nothing is kept); 0 when k covers
    /// every counted entry.
    /// </summary>
    public float Threshold
    {
        get
        {
            if (_threshold.HasValue) return _threshold.Value;
            if (_fine is null) throw new InvalidOperationException("the fine pass has not run");
            long need = _keep - _aboveBucket;
            long seen = 0;
            for (int lo = 65535; lo >= 0; lo--)
            {
                seen += _fine[lo];
                if (seen >= need)
                {
                    // need − (seen − ties) of the fine[lo] entries equal to the threshold complete the k.
                    long ties = _fine[lo];
                    long kept = need - (seen - ties);
                    _tiesKept = kept == ties ? AllTies : kept;
                    _threshold = BitConverter.UInt32BitsToSingle(((uint)_bucket << 16) | (uint)lo);
                    return _threshold.Value;
                }
            }
            throw new InvalidOperationException("the fine pass saw fewer entries than the coarse pass (different data?)");
        }
    }

    /// <summary>
    /// How many of the entries whose |τ| equals <see cref="Threshold"/> complete the k: exactly k
    /// entries are kept when those are the first <see cref="TiesKept"/> of them in the order the
    /// data was counted. <see cref="AllTies"/> when every such entry is needed (no tie crosses the
    /// k-th place); 0 when k = 0.
    /// </summary>
    public long TiesKept
    {
        get
        {
            _ = Threshold;
            return _tiesKept;
        }
    }

    /// <summary><see cref="Threshold"/> and <see cref="TiesKept"/> together.</summary>
    public TrimCut Cut => new(Threshold, TiesKept);

    /// <summary>The <see cref="TiesKept"/> value that keeps every entry equal to the threshold.</summary>
    public const long AllTies = long.MaxValue;

    private void FinishCoarse()
    {
        if (_bucket >= 0 || _threshold.HasValue) return;
        if (_keep == 0) { _threshold = float.NaN; _tiesKept = 0; return; }
        if (_keep >= _counted) { _threshold = 0f; _tiesKept = AllTies; return; }
        long seen = 0;
        for (int hi = 65535; hi >= 0; hi--)
        {
            long c = _coarse[hi];
            if (seen + c >= _keep)
            {
                _bucket = hi;
                _aboveBucket = seen;
                return;
            }
            seen += c;
        }
    }

    private static uint AbsBits(float x) => BitConverter.SingleToUInt32Bits(x) & 0x7FFF_FFFFu;
}

/// <summary>
/// Which entries of one task vector τ (one tensor, or a part of it) a magnitude trim keeps: every
/// entry with |τ| &gt; <paramref name="Threshold"/>, and of the entries with |τ| = Threshold the first
/// <paramref name="TiesKept"/> in element order. So a trim keeps exactly k entries even when
/// magnitudes tie at the k-th place, and which of the tied ones survive is fixed (the lowest
/// indices), not left to a sort's whim. NaN entries are never kept.
/// </summary>
/// <param name="Threshold">The k-th largest magnitude; NaN keeps nothing.</param>
/// <param name="TiesKept">How many entries equal to the threshold are kept, counted from the first element; <see cref="MagnitudeThreshold.AllTies"/> keeps them all.</param>
public readonly record struct TrimCut(float Threshold, long TiesKept)
{
    /// <summary>Keeps every (non-NaN) entry: what a density of 1 does.</summary>
    public static TrimCut KeepAll => new(0f, MagnitudeThreshold.AllTies);
}
