using System.Runtime.InteropServices;

namespace CycleQD.Cuda.Kernels;

// Byte-for-byte twins of the by-value argument structs in native/kernels/*.cu (x86-64 / PTX
// layout: natural alignment, 8-byte pointers). The tests compare each size with the kernel's
// ".param .align 8 .b8 <kernel>_param_0[N]" in the embedded PTX.

/// <summary>merge.cu MergeArgs: child = base + Σ coef[i]·(parents[i] − base).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct MergeArgs
{
    public const int MaxParents = 8;
    public ulong Base;
    public fixed ulong Parents[MaxParents];
    public fixed float Coef[MaxParents];
    public ulong Out;
    public long N;
    public int NumParents;
}

/// <summary>taskvec.cu TaskVectorArgs: tau = theta − base.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TaskVectorArgs
{
    public ulong Theta;
    public ulong Base;
    public ulong Tau;
    public long N;
}

/// <summary>taskvec.cu ApplyTaskVectorArgs: theta = base + tau.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ApplyTaskVectorArgs
{
    public ulong Base;
    public ulong Tau;
    public ulong Theta;
    public long N;
}

/// <summary>convert.cu ConvertArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ConvertArgs
{
    public ulong In;
    public ulong Out;
    public long N;
}

/// <summary>mutate.cu RescaleArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RescaleArgs
{
    public ulong S;
    public ulong Delta;
    public long N;
    public ulong Seed;
    public uint Stream;
    public uint Generation;
    public float WMax;
}

/// <summary>mutate.cu ScaleColumnsArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ScaleColumnsArgs
{
    public ulong In;
    public ulong Scale;
    public ulong Out;
    public long Rows;
    public int Cols;
    public int Batch;
}

/// <summary>mutate.cu ScaledNoiseArgs: x = x + sigma·noise, in place.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ScaledNoiseArgs
{
    public ulong X;
    public ulong Noise;
    public long N;
    public float Sigma;
}

/// <summary>mutate.cu GaussianArgs.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GaussianArgs
{
    public ulong Out;
    public long N;
    public ulong Seed;
    public uint Stream;
    public uint Generation;
}

/// <summary>merge_group.cuh MergeSegment: one tensor of a grouped merge (an array of them in device memory).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct MergeSegment
{
    public ulong Base;
    public fixed ulong Parents[MergeArgs.MaxParents];
    public ulong Out;
    public long N;
    public long FirstBlock;
}

/// <summary>merge.cu MergeGroupArgs: the segments of one storage type and the coefficients they share.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct MergeGroupArgs
{
    public ulong Segments;
    public fixed float Coef[MergeArgs.MaxParents];
    public int NumSegments;
    public int NumParents;
}
