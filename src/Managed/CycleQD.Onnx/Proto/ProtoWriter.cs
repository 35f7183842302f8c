using System.Buffers.Binary;
using System.Text;

namespace CycleQD.Onnx.Proto;

/// <summary>
/// Minimal protocol-buffers encoder: the wire types ONNX's ModelProto needs (varint, 32-bit and
/// length-delimited). Nested messages are encoded into their own buffer first so that their length
/// prefix is known; graphs here hold no weights, so the buffers stay small.
/// </summary>
internal sealed class ProtoWriter
{
    private readonly MemoryStream _buffer = new();

    private const int WireVarint = 0;
    private const int WireLengthDelimited = 2;
    private const int WireFixed32 = 5;

    /// <summary>The encoded bytes so far.</summary>
    public byte[] ToArray() => _buffer.ToArray();

    /// <summary>Appends a base-128 varint (negative values take ten bytes, as protobuf's int64 does).</summary>
    public void WriteRawVarint(ulong value)
    {
        while (value >= 0x80)
        {
            _buffer.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        _buffer.WriteByte((byte)value);
    }

    private void WriteTag(int field, int wireType) => WriteRawVarint(((ulong)(uint)field << 3) | (uint)wireType);

    /// <summary>An int64/int32/enum field.</summary>
    public void WriteInt64(int field, long value)
    {
        WriteTag(field, WireVarint);
        WriteRawVarint(unchecked((ulong)value));
    }

    /// <summary>A float field (fixed 32-bit, little-endian).</summary>
    public void WriteFloat(int field, float value)
    {
        WriteTag(field, WireFixed32);
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteSingleLittleEndian(b, value);
        _buffer.Write(b);
    }

    /// <summary>A bytes field.</summary>
    public void WriteBytes(int field, ReadOnlySpan<byte> value)
    {
        WriteTag(field, WireLengthDelimited);
        WriteRawVarint((ulong)value.Length);
        _buffer.Write(value);
    }

    /// <summary>A UTF-8 string field.</summary>
    public void WriteString(int field, string value) => WriteBytes(field, Encoding.UTF8.GetBytes(value));

    /// <summary>A nested message field whose body <paramref name="body"/> writes.</summary>
    public void WriteMessage(int field, Action<ProtoWriter> body)
    {
        var nested = new ProtoWriter();
        body(nested);
        WriteBytes(field, nested._buffer.GetBuffer().AsSpan(0, (int)nested._buffer.Length));
    }

    /// <summary>A packed repeated int64 field.</summary>
    public void WritePackedInt64(int field, IEnumerable<long> values)
    {
        var nested = new ProtoWriter();
        foreach (long v in values) nested.WriteRawVarint(unchecked((ulong)v));
        WriteBytes(field, nested._buffer.GetBuffer().AsSpan(0, (int)nested._buffer.Length));
    }
}
