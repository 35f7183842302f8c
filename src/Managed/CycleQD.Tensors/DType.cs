namespace CycleQD.Tensors;

/// <summary>Element types of the safetensors format (names as written in a header).</summary>
public enum DType
{
    Bool, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2,
}

/// <summary>Names, sizes and float-ness of <see cref="DType"/> values.</summary>
public static class DTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(DType dtype) => dtype switch
    {
        DType.Bool or DType.U8 or DType.I8 or DType.F8_E4M3 or DType.F8_E5M2 => 1,
        DType.I16 or DType.U16 or DType.F16 or DType.BF16 => 2,
        DType.I32 or DType.U32 or DType.F32 => 4,
        DType.F64 or DType.I64 or DType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>The header spelling, e.g. "BF16", "BOOL".</summary>
    public static string Name(DType dtype) => dtype == DType.Bool ? "BOOL" : dtype.ToString();

    /// <summary>Parses a header dtype string; false for names the format does not define.</summary>
    public static bool TryParse(string text, out DType dtype)
    {
        switch (text)
        {
            case "BOOL": dtype = DType.Bool; return true;
            case "U8": dtype = DType.U8; return true;
            case "I8": dtype = DType.I8; return true;
            case "I16": dtype = DType.I16; return true;
            case "U16": dtype = DType.U16; return true;
            case "F16": dtype = DType.F16; return true;
            case "BF16": dtype = DType.BF16; return true;
            case "I32": dtype = DType.I32; return true;
            case "U32": dtype = DType.U32; return true;
            case "F32": dtype = DType.F32; return true;
            case "F64": dtype = DType.F64; return true;
            case "I64": dtype = DType.I64; return true;
            case "U64": dtype = DType.U64; return true;
            case "F8_E4M3": dtype = DType.F8_E4M3; return true;
            case "F8_E5M2": dtype = DType.F8_E5M2; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>True for the storage types the compute backends read and write (F32, F16, BF16).</summary>
    public static bool IsWeightType(DType dtype) => dtype is DType.F32 or DType.F16 or DType.BF16;
}
