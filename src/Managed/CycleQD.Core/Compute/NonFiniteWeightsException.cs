namespace CycleQD.Core.Compute;

/// <summary>
/// A candidate's weights hold NaN or infinite values: a crossover or a mutation overflowed float32
/// (extreme weights, or huge values in a parent). Raised by a compute backend or an evaluator for
/// the child being made; the engine scores such a child 0 on every task, keeps it out of the
/// archives and records the message, and the run goes on.
/// </summary>
public sealed class NonFiniteWeightsException : Exception
{
    /// <summary>The tensor where the non-finite values were found.</summary>
    public string TensorName { get; }

    /// <summary>Creates the error for <paramref name="tensorName"/>; <paramref name="detail"/> says what was found and at which step.</summary>
    public NonFiniteWeightsException(string tensorName, string detail)
        : base($"tensor '{tensorName}': {detail}")
    {
        TensorName = tensorName;
    }
}
