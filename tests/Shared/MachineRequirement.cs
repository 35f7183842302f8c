namespace CycleQD.Testing;

/// <summary>
/// What a test needs from the machine it runs on (the shared data folder, root, a system file or
/// package). On a developer's machine a missing requirement skips the test with the reason. Under
/// CI (the <c>CI</c> variable set, as CI services and .ci/run do) it fails instead: CI runs as
/// root with the shared data and ./build.sh setup's packages, so a skip would only hide a broken setup.
/// GPU checks do not come through here: CI machines have no GPU, so those stay skips.
/// </summary>
internal static class MachineRequirement
{
    /// <summary>The environment variable CI services set (GitHub Actions, GitLab, .ci/run's callers: CI=true).</summary>
    public const string CiVariable = "CI";

    /// <summary>Whether this test run is CI: <c>CI</c> is set to anything but empty, "false" or "0".</summary>
    public static bool IsCi => IsCiValue(Environment.GetEnvironmentVariable(CiVariable));

    /// <summary>Whether <paramref name="value"/>, the value of <c>CI</c>, marks a CI run.</summary>
    public static bool IsCiValue(string? value)
    {
        string v = value?.Trim() ?? "";
        return v.Length > 0 && v != "0" && !v.Equals("false", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The variable with which ./build.sh setup is told not to install the CUDA compiler.</summary>
    public const string SkipNvccVariable = "CYCLEQD_SKIP_NVCC";

    /// <summary>
    /// Whether a CI run must have what Debian's CUDA toolkit brings (nvcc, the PTX and host check
    /// built with it, libcuda/cuBLAS/cuSOLVER): setup installs it on a machine with no driver and no
    /// nvcc, as CI machines are, unless <c>CYCLEQD_SKIP_NVCC=1</c> declined it.
    /// </summary>
    public static bool CiExpectsCudaToolkit(string? ci, string? skipNvcc) => IsCiValue(ci) && skipNvcc?.Trim() != "1";

    /// <summary>
    /// Skips the test, or under CI fails it, unless <paramref name="met"/>, for a part of the CUDA
    /// toolkit (not a GPU); a CI run with <c>CYCLEQD_SKIP_NVCC=1</c> skips as a developer's machine does.
    /// </summary>
    public static void RequireCudaToolkit(bool met, string reason) =>
        Require(met, reason, CiExpectsCudaToolkit(Environment.GetEnvironmentVariable(CiVariable), Environment.GetEnvironmentVariable(SkipNvccVariable)));

    /// <summary>Skips the test, or under CI fails it, with <paramref name="reason"/> unless <paramref name="met"/>.</summary>
    public static void Require(bool met, string reason) => Require(met, reason, IsCi);

    /// <summary>
    /// As <see cref="Require(bool, string)"/>, with CI decided by the caller: the rule's own tests use
    /// this, so they need not change the process environment other tests read at the same time.
    /// </summary>
    public static void Require(bool met, string reason, bool ci)
    {
        var (outcome, message) = Decide(met, reason, ci);
        if (outcome == RequirementOutcome.Fail) Assert.Fail(message);
        if (outcome == RequirementOutcome.Skip) Assert.Skip(message);
    }

    /// <summary>
    /// What a test does about a requirement, and the message it gives. Separate from acting on it
    /// because xUnit marks the calling test skipped as soon as Assert.Skip runs, even when the
    /// exception is caught, so the skip branch can only be checked here.
    /// </summary>
    public static (RequirementOutcome Outcome, string Message) Decide(bool met, string reason, bool ci) =>
        met ? (RequirementOutcome.Run, "")
        : ci ? (RequirementOutcome.Fail, $"{reason}. {CiVariable} is set, so this is a failure rather than a skip: "
                                          + "a CI machine must provide what the tests need")
        : (RequirementOutcome.Skip, reason);
}

/// <summary>What a test does about one machine requirement.</summary>
internal enum RequirementOutcome
{
    /// <summary>The requirement is met: the test runs.</summary>
    Run,

    /// <summary>Missing on a developer's machine: the test skips with the reason.</summary>
    Skip,

    /// <summary>Missing under CI: the test fails with the reason.</summary>
    Fail,
}
