using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Tests;

/// <summary>
/// CycleQD's SiluMul CPU operator (native/ortops) alone, in a one-node graph, against silu(gate)·up in
/// float64: fresh random inputs (including magnitudes where e^|a| overflows float32), output
/// poisoned with NaN before every run. LlamaGraphTests run it inside the fused graph.
/// </summary>
public class SiluMulTests
{
    private static InferenceSession Session()
    {
        var g = new OnnxGraph("silu_mul");
        string x = g.Input("x", OnnxElementType.Float, "rows", "seq", "width2");
        g.DomainNode(CpuOperators.Domain, "SiluMul", [x], ["y"]);
        g.Output("y", "y", OnnxElementType.Float, "rows", "seq", "width");
        using var so = new SessionOptions();
        return CpuOperators.CreateSession(g.ToModelBytes(), so);
    }

    private static float[] Run(InferenceSession session, float[] x, long[] shape)
    {
        var outShape = shape.ToArray();
        outShape[^1] /= 2;
        var y = Enumerable.Repeat(float.NaN, (int)outShape.Aggregate(1L, (a, b) => a * b)).ToArray();
        using var xv = OrtValue.CreateTensorValueFromMemory(x, shape);
        using var yv = OrtValue.CreateTensorValueFromMemory(y, outShape);
        using var binding = session.CreateIoBinding();
        binding.BindInput("x", xv);
        binding.BindOutput("y", yv);
        using var runOptions = new RunOptions();
        session.RunWithBinding(runOptions, binding);
        return y;
    }

    [Theory]
    [InlineData(64, 1, 172)]     // a decoding step of stories260K / TinySkills at batch 64
    [InlineData(3, 5, 13)]       // a width with a tail shorter than a vector
    [InlineData(2, 1, 8)]
    [InlineData(1, 300, 256)]    // large enough to be divided among threads
    public void MatchesFloat64(int rows, int seq, int width)
    {
        CpuOperatorsRequirement.Require();
        var rng = new Random(rows * 1000 + seq * 10 + width);
        int n = rows * seq;
        var x = new float[n * 2 * width];
        for (int i = 0; i < x.Length; i++)
        {
            // Mostly ordinary activations; some far out, where e^-a or e^a alone would overflow.
            double u = rng.NextDouble() * 2 - 1;
            x[i] = (float)(rng.Next(20) == 0 ? u * 120 : u * 6);
        }
        using var session = Session();
        var y = Run(session, x, [rows, seq, 2 * width]);
        double errSq = 0, refSq = 0;
        for (int r = 0; r < n; r++)
            for (int i = 0; i < width; i++)
            {
                double a = x[r * 2 * width + i], up = x[r * 2 * width + width + i];
                double expected = a / (1 + Math.Exp(-a)) * up;
                double got = y[r * width + i];
                Assert.False(double.IsNaN(got), $"row {r}, column {i} was not written");
                errSq += (got - expected) * (got - expected);
                refSq += expected * expected;
            }
        double rel = Math.Sqrt(errSq / refSq);
        Assert.True(rel < 1e-6, $"relative error {rel:E3}");
    }

    [Fact]
    public void AnOddLastAxis_IsRefusedNamingTheShape()
    {
        CpuOperatorsRequirement.Require();
        using var session = Session();
        var e = Assert.Throws<OnnxRuntimeException>(() => Run(session, new float[2 * 7], [2, 1, 7]));
        Assert.Contains("must be even", e.Message);
        Assert.Contains("[2, 1, 7]", e.Message);
    }
}
