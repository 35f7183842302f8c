using System.Text.Json;

namespace CycleQD.Testing;

/// <summary>Copies of real model folders with chosen weight elements overwritten (NaN, ∞, huge values).</summary>
internal static class PoisonedWeights
{
    /// <summary>Copies the files of <paramref name="source"/> into <paramref name="destination"/> (created), writable.</summary>
    public static string CopyFolder(string source, string destination)
    {
        Directory.CreateDirectory(destination);
        foreach (var f in Directory.GetFiles(source))
        {
            string to = Path.Combine(destination, Path.GetFileName(f));
            File.Copy(f, to);
            File.SetAttributes(to, FileAttributes.Normal);
        }
        return destination;
    }

    /// <summary>
    /// Overwrites elements of <paramref name="tensor"/> in the safetensors file <paramref name="file"/>
    /// in place, encoding each value in the tensor's dtype (F32, F16 or BF16; bfloat16 by truncation,
    /// which keeps NaN, ∞ and the chosen magnitudes). Reads the header itself, so it works on any file.
    /// </summary>
    public static void SetValues(string file, string tensor, params (long Index, float Value)[] values)
    {
        using var fs = new FileStream(file, FileMode.Open, FileAccess.ReadWrite);
        var len = new byte[8];
        fs.ReadExactly(len);
        long headerLength = (long)BitConverter.ToUInt64(len);
        var header = new byte[headerLength];
        fs.ReadExactly(header);
        using var doc = JsonDocument.Parse(header);
        var entry = doc.RootElement.GetProperty(tensor);
        string dtype = entry.GetProperty("dtype").GetString()!;
        long begin = entry.GetProperty("data_offsets")[0].GetInt64();
        foreach (var (index, value) in values)
        {
            byte[] bytes = dtype switch
            {
                "F32" => BitConverter.GetBytes(value),
                "F16" => BitConverter.GetBytes((Half)value),
                "BF16" => BitConverter.GetBytes((ushort)(BitConverter.SingleToUInt32Bits(value) >> 16)),
                _ => throw new ArgumentException($"{file}: tensor '{tensor}' is {dtype}, not a float type"),
            };
            fs.Position = 8 + headerLength + begin + index * bytes.Length;
            fs.Write(bytes);
        }
    }
}
