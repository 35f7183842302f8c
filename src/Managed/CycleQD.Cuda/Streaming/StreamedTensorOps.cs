using CycleQD.Core.Compute;
using CycleQD.Tensors;

namespace CycleQD.Cuda.Streaming;

/// <summary>
/// The backend's element-wise operations over a <see cref="TensorStreamer"/>: each input tensor is
/// read from the device in place or staged from host memory chunk by chunk, and the output (always
/// device memory) is written by the device's kernel for each chunk. The caller synchronises the device
/// before it reads results.
/// </summary>
internal static class StreamedTensorOps
{
    /// <summary>
    /// child = base + Σ cᵢ(θᵢ − base) for every tensor of <paramref name="tensors"/>, cᵢ from
    /// <paramref name="weights"/> as the device's merge computes them.
    /// </summary>
    public static void Merge(TensorStreamer streamer, IReadOnlyList<TensorSpec> tensors, Func<int, StreamOperand> baseOf,
        IReadOnlyList<Func<int, StreamOperand>> parentsOf, float[] weights, Func<int, ulong> childOf)
    {
        var device = streamer.Device;
        var operands = new StreamOperand[1 + parentsOf.Count];
        var parents = new ulong[parentsOf.Count];
        for (int t = 0; t < tensors.Count; t++)
        {
            var dtype = tensors[t].DType;
            int size = DTypes.SizeOf(dtype);
            operands[0] = baseOf(t);
            for (int p = 0; p < parents.Length; p++) operands[1 + p] = parentsOf[p](t);
            ulong child = childOf(t);
            streamer.Run(dtype, tensors[t].ElementCount, operands, (a, first, count) =>
            {
                a[1..].CopyTo(parents);
                device.Merge(dtype, a[0], parents, weights, child + (ulong)(first * size), count);
            });
        }
    }

    /// <summary>tau = theta − base (float32 at <paramref name="tau"/>) over <paramref name="elements"/> elements of <paramref name="dtype"/>.</summary>
    public static void TaskVector(TensorStreamer streamer, DType dtype, long elements, StreamOperand theta, StreamOperand baseWeights, ulong tau)
    {
        var device = streamer.Device;
        streamer.Run(dtype, elements, [theta, baseWeights], (a, first, count) =>
            device.TaskVector(dtype, a[0], a[1], tau + (ulong)(first * sizeof(float)), count));
    }

    /// <summary>theta = base + tau (float32 tau, <paramref name="theta"/> on the device) over <paramref name="elements"/> elements of <paramref name="dtype"/>.</summary>
    public static void ApplyTaskVector(TensorStreamer streamer, DType dtype, long elements, StreamOperand baseWeights, ulong tau, ulong theta)
    {
        var device = streamer.Device;
        int size = DTypes.SizeOf(dtype);
        streamer.Run(dtype, elements, [baseWeights], (a, first, count) =>
            device.ApplyTaskVector(dtype, a[0], tau + (ulong)(first * sizeof(float)), theta + (ulong)(first * size), count));
    }
}
