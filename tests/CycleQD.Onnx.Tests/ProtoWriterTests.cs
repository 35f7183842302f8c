using CycleQD.Onnx.Proto;

namespace CycleQD.Onnx.Tests;

public sealed class ProtoWriterTests
{
    [Theory]
    [InlineData(0L, new byte[] { 0x00 })]
    [InlineData(1L, new byte[] { 0x01 })]
    [InlineData(150L, new byte[] { 0x96, 0x01 })]
    [InlineData(300L, new byte[] { 0xAC, 0x02 })]
    [InlineData(-1L, new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 })]
    public void Int64Field_EncodesTagAndVarintAsProtobufSpec(long value, byte[] varint)
    {
        var w = new ProtoWriter();
        w.WriteInt64(1, value);
        Assert.Equal([0x08, .. varint], w.ToArray());
    }

    [Fact]
    public void StringAndNestedMessage_AreLengthDelimited()
    {
        // The protobuf encoding guide's examples: field 2 = "testing"; field 3 = message { field 1 = 150 }.
        var w = new ProtoWriter();
        w.WriteString(2, "testing");
        w.WriteMessage(3, m => m.WriteInt64(1, 150));
        Assert.Equal([0x12, 0x07, .. "testing"u8.ToArray(), 0x1A, 0x03, 0x08, 0x96, 0x01], w.ToArray());
    }

    [Fact]
    public void FloatAndPackedFields_UseFixed32AndOneLength()
    {
        var w = new ProtoWriter();
        w.WriteFloat(2, 1.0f);
        w.WritePackedInt64(4, [3, 270, 86942]);
        Assert.Equal([0x15, 0x00, 0x00, 0x80, 0x3F, 0x22, 0x06, 0x03, 0x8E, 0x02, 0x9E, 0xA7, 0x05], w.ToArray());
    }
}
