namespace CycleQD.Core.Evaluation;

/// <summary>
/// A benchmark whose verdicts depend on an environment it pins (e.g. the root file system its
/// samples run on). Two scores of the benchmark compare only when their fingerprints are equal;
/// whoever stores a score stores the fingerprint with it.
/// </summary>
public interface IPinnedEnvironment
{
    /// <summary>What the environment is, in a few words (e.g. "AgentBench OS root file system").</summary>
    string EnvironmentName { get; }

    /// <summary>A content hash of the environment (e.g. "sha256:…"); throws when the environment is not there.</summary>
    string EnvironmentFingerprint { get; }
}
