using CycleQD.Core.Evaluation;

namespace CycleQD.Tasks.Scripted;

/// <summary>
/// A text generator with no model: answers each prompt with a function of the request (typically
/// a lookup into the benchmark data). Used to test a harness on its own and to measure its
/// overhead. Records the size of every batch it is given.
/// </summary>
public sealed class ScriptedResponder(Func<GenerationRequest, string> respond) : ITextGenerator
{
    private readonly List<int> _batchSizes = [];

    /// <summary>Sizes of the batches received so far, in call order.</summary>
    public IReadOnlyList<int> BatchSizes { get { lock (_batchSizes) return [.. _batchSizes]; } }

    /// <inheritdoc/>
    public Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, CancellationToken cancellationToken = default)
    {
        lock (_batchSizes) _batchSizes.Add(requests.Count);
        var results = new GenerationResult[requests.Count];
        for (int i = 0; i < requests.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            results[i] = new GenerationResult(respond(requests[i]), [], GenerationFinish.Eos);
        }
        return Task.FromResult<IReadOnlyList<GenerationResult>>(results);
    }
}
