using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Core.Synthetic;
using CycleQD.Cpu;

namespace CycleQD.Runs.Tests;

/// <summary>What an engine test needs on the CPU: a synthetic problem, its backend, and the base and one expert per task uploaded to it.</summary>
internal sealed class SyntheticEngineInputs : IDisposable
{
    public SyntheticEngineInputs(IReadOnlyList<string> tasks, SyntheticProblemOptions options)
    {
        Problem = new SyntheticProblem(tasks, options);
        Base = Backend.Upload(Problem.BaseModel());
        Experts = tasks.Select((t, k) => new Expert(t, Backend.Upload(Problem.Expert(k)))).ToList();
    }

    public SyntheticProblem Problem { get; }

    public CpuComputeBackend Backend { get; } = new();

    public IWeightSet Base { get; }

    public List<Expert> Experts { get; }

    public void Dispose()
    {
        foreach (var e in Experts) e.Weights.Dispose();
        Base.Dispose();
        Backend.Dispose();
    }
}

/// <summary>A checkpoint sink that keeps every committed state and generation record in memory.</summary>
internal sealed class RecordingSink : ICheckpointSink
{
    public List<RunState> States { get; } = [];

    public List<GenerationRecord> Records { get; } = [];

    public void Commit(RunState state, GenerationRecord? record)
    {
        States.Add(state);
        if (record != null) Records.Add(record);
    }
}
