namespace CycleQD.Tensors;

/// <summary>
/// Checks that two models can be merged tensor by tensor: the same tensor names with the same
/// shapes. Storage dtypes may differ (merging computes in float32).
/// </summary>
public static class ModelCompatibility
{
    /// <summary>Describes the first difference between the two models, or returns null when they match.</summary>
    /// <remarks>Tensors are compared in <paramref name="a"/>'s order, then tensors only in <paramref name="b"/>.</remarks>
    public static string? FirstDifference(SafetensorsModel a, SafetensorsModel b)
    {
        foreach (var ta in a.Tensors)
        {
            if (!b.Contains(ta.Name))
                return $"tensor '{ta.Name}' is in {a.Source} but not in {b.Source}";
            var tb = b.GetInfo(ta.Name);
            if (!ta.SameShape(tb))
                return $"tensor '{ta.Name}' has shape {ta.ShapeText} in {a.Source} but {tb.ShapeText} in {b.Source}";
        }
        foreach (var tb in b.Tensors)
            if (!a.Contains(tb.Name))
                return $"tensor '{tb.Name}' is in {b.Source} but not in {a.Source}";
        return null;
    }

    /// <summary>Throws a <see cref="TensorFormatException"/> naming the first difference, if any.</summary>
    public static void EnsureCompatible(SafetensorsModel reference, SafetensorsModel other)
    {
        string? diff = FirstDifference(reference, other);
        if (diff != null) throw new TensorFormatException(other.Source, null, "not compatible with " + reference.Source + ": " + diff);
    }
}
