using System.Security.Cryptography;
using System.Text;
using CycleQD.Core.Compute;
using CycleQD.Tensors;

namespace CycleQD.Runs.Distributed;

/// <summary>
/// A cheap check that two processes built the same child: SHA-256 over every tensor's name, dtype
/// and shape and a fixed sample of its bytes (64 bytes of every 4 KiB, and the last 64). A child
/// rebuilt by another build, backend kind or BLAS thread count differs in every mutated matrix, so
/// the sample catches it; hashing all of an 8B model (16 GB) per child would cost the coordinator
/// seconds it does not have.
/// </summary>
internal static class ChildFingerprint
{
    private const int Block = 4096, Taken = 64;

    public static string Of(IComputeBackend backend, IWeightSet weights)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = [];
        for (int i = 0; i < weights.Tensors.Count; i++)
        {
            var s = weights.Tensors[i];
            sha.AppendData(Encoding.UTF8.GetBytes($"{s.Name}\0{DTypes.Name(s.DType)}\0{s.ShapeText}\0"));
            if (buffer.LongLength < s.ByteLength) buffer = new byte[s.ByteLength];
            var bytes = buffer.AsSpan(0, checked((int)s.ByteLength));
            backend.Download(weights, i, bytes);
            for (int at = 0; at < bytes.Length; at += Block)
                sha.AppendData(bytes.Slice(at, Math.Min(Taken, bytes.Length - at)));
            sha.AppendData(bytes[Math.Max(0, bytes.Length - Taken)..]);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset().AsSpan(0, 16));
    }
}
