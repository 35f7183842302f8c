using CycleQD.Onnx.Runtime;
using CycleQD.Testing;

namespace CycleQD.Onnx.Tests;

/// <summary>Skips a test that needs CycleQD's CPU operator library when this machine has none, saying why.</summary>
internal static class CpuOperatorsRequirement
{
    public static void Require() =>
        MachineRequirement.Require(CpuOperators.IsAvailable, "needs libcycleqd_ortops.so, which the build compiles with the system's C++ compiler: " + CpuOperators.WhyUnavailable);
}
