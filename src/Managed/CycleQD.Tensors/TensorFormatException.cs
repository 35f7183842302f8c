namespace CycleQD.Tensors;

/// <summary>
/// A weight file or model folder that cannot be used as it is. The message always names the file
/// and, where one is involved, the tensor, so that one line on a console tells the user what to fix.
/// </summary>
public sealed class TensorFormatException : Exception
{
    /// <summary>The file (or folder) at fault.</summary>
    public string FilePath { get; }

    /// <summary>The tensor at fault, when the problem is specific to one.</summary>
    public string? TensorName { get; }

    /// <summary>Creates an error for <paramref name="filePath"/> (and <paramref name="tensorName"/>).</summary>
    public TensorFormatException(string filePath, string? tensorName, string problem, Exception? inner = null)
        : base(Format(filePath, tensorName, problem), inner)
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    private static string Format(string filePath, string? tensorName, string problem) =>
        tensorName is null ? $"{filePath}: {problem}" : $"{filePath}: tensor '{tensorName}': {problem}";
}
