namespace CycleQD.Core.Compute;

/// <summary>
/// A host tensor source whose bytes come from a mapping that can outlive it (a memory-mapped
/// safetensors file), so that a backend which keeps weights in host memory can read them in place
/// for as long as a weight set lives instead of copying the whole model.
/// </summary>
public interface IMappedTensorSource : IHostTensorSource
{
    /// <summary>
    /// Opens a mapping of the same tensors that the caller owns: its <see cref="IHostTensorSource.GetBytes"/>
    /// spans stay valid, at fixed addresses, until it is disposed, whatever happens to this source.
    /// </summary>
    IMappedTensors OpenMapping();
}

/// <summary>
/// Tensor bytes mapped for as long as this object lives (see <see cref="IMappedTensorSource.OpenMapping"/>):
/// every span it returns stays valid, at the same address, until <see cref="IDisposable.Dispose"/>.
/// </summary>
public interface IMappedTensors : IHostTensorSource, IDisposable
{
}
