namespace CycleQD.Tasks.Prompts;

/// <summary>
/// Generation settings the reference's vLLM engine imposes on every paper task (MBPP+, AgentBench
/// DB and OS), beside each task's own sampling parameters; docs/evaluation.md lists them.
/// </summary>
public static class ReferenceSampling
{
    /// <summary>The reference's <c>LLM(max_model_len=4096)</c>: longer prompts give an empty output, and prompt + output is capped there.</summary>
    public const int MaxModelLen = 4096;
}
