using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;

namespace CycleQD.Benchmarks;

/// <summary>One launch, one warm-up and a few iterations: these kernels run for tens of milliseconds to seconds each.</summary>
internal sealed class ShortJobConfig : ManualConfig
{
    public ShortJobConfig()
    {
        AddJob(Job.Default.WithLaunchCount(1).WithWarmupCount(1).WithIterationCount(5).WithInvocationCount(1).WithUnrollFactor(1));
    }
}
