using CycleQD.Core.Compute;
using CycleQD.Cuda.Checks;

namespace CycleQD.Cuda.Tests;

public class KernelCheckOptionsTests
{
    [Fact]
    public void SvdSettings_DefaultToTheMutationsDefaults()
    {
        // The device check times the randomized SVD the mutation will run; its defaults repeat
        // MutationOptions' (a default parameter value cannot read another record's default).
        var check = new KernelCheckOptions(KernelCheckOptions.Llama3_8BShapes);
        var mutation = new MutationOptions();
        Assert.Equal(mutation.PowerIterations, check.SvdPowerIterations);
        Assert.Equal(mutation.Oversampling, check.SvdOversampling);
    }
}
