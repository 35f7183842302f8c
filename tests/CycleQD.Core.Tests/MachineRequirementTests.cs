using CycleQD.Testing;
using Xunit.Sdk;

namespace CycleQD.Core.Tests;

/// <summary>The rule every test project follows for a missing machine requirement: skip locally, fail under CI.</summary>
public sealed class MachineRequirementTests
{
    [Theory]
    [InlineData("true", true)]
    [InlineData("TRUE", true)]
    [InlineData("1", true)]
    [InlineData("yes", true)]
    [InlineData(null, false)]
    [InlineData("", false)]
    [InlineData("  ", false)]
    [InlineData("false", false)]
    [InlineData("False", false)]
    [InlineData("0", false)]
    public void CiVariable_MarksACiRun_UnlessEmptyFalseOrZero(string? value, bool ci) =>
        Assert.Equal(ci, MachineRequirement.IsCiValue(value));

    [Theory]
    [InlineData("true", null, true)]
    [InlineData("true", "0", true)]
    [InlineData("true", "1", false)]
    [InlineData(null, null, false)]
    [InlineData("false", null, false)]
    public void CudaToolkit_IsExpectedUnderCi_UnlessSetupWasToldToSkipNvcc(string? ci, string? skipNvcc, bool expected) =>
        Assert.Equal(expected, MachineRequirement.CiExpectsCudaToolkit(ci, skipNvcc));

    [Fact]
    public void MissingRequirement_OutsideCi_IsASkipWithTheReason()
    {
        var (outcome, message) = MachineRequirement.Decide(false, "no frobnicator on this machine", ci: false);
        Assert.Equal(RequirementOutcome.Skip, outcome);
        Assert.Equal("no frobnicator on this machine", message);
    }

    [Fact]
    public void MissingRequirement_UnderCi_IsAFailureWithTheReasonSayingWhyItIsNotASkip()
    {
        var (outcome, message) = MachineRequirement.Decide(false, "no frobnicator on this machine", ci: true);
        Assert.Equal(RequirementOutcome.Fail, outcome);
        Assert.StartsWith("no frobnicator on this machine. CI is set, so this is a failure rather than a skip", message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MetRequirement_Runs(bool ci)
    {
        Assert.Equal(RequirementOutcome.Run, MachineRequirement.Decide(true, "unused", ci).Outcome);
        Assert.Null(Record.Exception(() => MachineRequirement.Require(true, "unused", ci)));
    }

    [Fact]
    public void Require_UnderCi_FailsTheTest()
    {
        var e = Assert.Throws<FailException>(() => MachineRequirement.Require(false, "no frobnicator on this machine", ci: true));
        Assert.StartsWith("no frobnicator on this machine. CI is set", e.Message);
    }

    [Fact]
    public void MissingSharedDataFolder_UnderCi_FailsNamingTheFolderAndTheVariable()
    {
        var e = Assert.Throws<FailException>(() => TestPaths.RequireSharedData(null, ci: true, "agentbench_db"));
        Assert.Contains("the shared test data folder is missing", e.Message);
        Assert.Contains("$CYCLEQD_SHARED_DATA", e.Message);
        Assert.Contains(Path.Combine("shared", "data"), e.Message);
    }

    [Fact]
    public void MissingFileInSharedData_UnderCi_FailsNamingThePath()
    {
        using var data = new TempDir();
        string expected = Path.Combine(data.Path, "agentbench_db", "absent.jsonl");
        Assert.Equal(expected + " is not present in the shared test data folder", TestPaths.SharedDataProblem(data.Path, "agentbench_db", "absent.jsonl"));
        var e = Assert.Throws<FailException>(() => TestPaths.RequireSharedData(data.Path, ci: true, "agentbench_db", "absent.jsonl"));
        Assert.StartsWith(expected + " is not present", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PresentSharedDataFile_IsReturned(bool ci)
    {
        using var data = new TempDir();
        Directory.CreateDirectory(data.File("mbpp"));
        File.WriteAllText(data.File("mbpp/plus.jsonl"), "{}\n");
        Assert.Null(TestPaths.SharedDataProblem(data.Path, "mbpp", "plus.jsonl"));
        Assert.Equal(data.File("mbpp/plus.jsonl"), TestPaths.RequireSharedData(data.Path, ci, "mbpp", "plus.jsonl"));
    }
}
