using System.Diagnostics;
using System.Globalization;
using CycleQD.Core.Random;
using CycleQD.Cuda.Checks;
using CycleQD.Tensors;
using CycleQD.Testing;

namespace CycleQD.Cuda.Tests;

/// <summary>
/// The kernels' host-callable helpers (native/kernels/philox.cuh, common.cuh), run on the CPU by
/// native/tests/kernel_host_check.cu, compared with Random123's answers and with the C# twins.
/// </summary>
public class KernelHostCheckTests
{
    private static readonly Lazy<string[]> Output = new(Run);

    private static string[] Run()
    {
        string exe = Path.Combine(TestPaths.RepoRoot, "artifacts", "native", "bin", "kernel_host_check");
        if (!File.Exists(exe)) return [];
        using var p = Process.Start(new ProcessStartInfo(exe) { RedirectStandardOutput = true })!;
        string text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        return text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    private static string[] Lines(string kind)
    {
        MachineRequirement.RequireCudaToolkit(Output.Value.Length > 0,
            "artifacts/native/bin/kernel_host_check is not built (no nvcc at build time; ./build.sh setup installs it)");
        return Output.Value.Where(l => l.StartsWith(kind + " ", StringComparison.Ordinal)).ToArray();
    }

    private static uint Hex(string s) => uint.Parse(s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    [Theory]
    // Random123 tests/kat_vectors, philox4x32 10: counter, key -> output.
    [InlineData("00000000 00000000 00000000 00000000 00000000 00000000", "6627e8d5 e169c58d bc57ac4c 9b00dbd8")]
    [InlineData("ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff", "408f276d 41c83b0e a20bc7c6 6d5451fd")]
    [InlineData("243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0", "d16cfe09 94fdcceb 5001e420 24126ea1")]
    public void KernelPhilox_MatchesRandom123KnownAnswers(string input, string expected)
    {
        var line = Assert.Single(Lines("philox"), l => l.StartsWith("philox " + input + " ->", StringComparison.Ordinal));
        Assert.Equal(expected, line.Split("-> ")[1].Trim());
    }

    [Fact]
    public void KernelPhilox_Blocks_MatchTheManagedReference()
    {
        var lines = Lines("block");
        Assert.NotEmpty(lines);
        foreach (var line in lines)
        {
            var t = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            ulong seed = ulong.Parse(t[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            uint stream = Hex(t[2]), gen = Hex(t[3]);
            ulong block = ulong.Parse(t[4], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            var b = Philox4x32.Block(seed, stream, gen, block);
            Assert.Equal((Hex(t[6]), Hex(t[7]), Hex(t[8]), Hex(t[9])), b);
        }
    }

    [Fact]
    public void KernelBf16Rounding_IsBitIdenticalToDTypeConversion()
    {
        var lines = Lines("bf16");
        Assert.True(lines.Length > 4000, $"only {lines.Length} bf16 samples");
        int nan = 0;
        foreach (var line in lines)
        {
            var t = line.Split(' ');
            uint bits = Hex(t[1]);
            float f = BitConverter.UInt32BitsToSingle(bits);
            if (float.IsNaN(f)) nan++;
            Assert.True(DTypeConversion.SingleToBF16(f) == (ushort)Hex(t[2]), $"float bits {t[1]}: kernel {t[2]}, DTypeConversion {DTypeConversion.SingleToBF16(f):x4}");
        }
        Assert.True(nan >= 4, "the samples include NaNs of both signs");
    }

    [Fact]
    public void Uniform_IsTheTop24BitsOfTheWord()
    {
        // The rescale kernel's layout: element i uses word i mod 4 of block i / 4 (purpose SvdScale = 0).
        var b = Philox4x32.Block(42, 3, 9, 1);
        float u = Philox4x32.Uniform(42, 3, 9, Streams.SvdScale, 6);
        Assert.Equal((b.X2 >> 8) / 16777216.0f, u);
        Assert.InRange(u, 0f, 1f - 1f / 16777216f);
    }
}
