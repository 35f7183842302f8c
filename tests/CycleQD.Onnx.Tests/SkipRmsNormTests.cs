using CycleQD.Onnx.Graph;
using CycleQD.Onnx.Runtime;
using CycleQD.Testing;
using Microsoft.ML.OnnxRuntime;

namespace CycleQD.Onnx.Tests;

/// <summary>
/// CycleQD's SkipRmsNorm CPU operator (native/ortops) alone, in a one-node graph, against the residual
/// sum and its RMS norm in float64: fresh random inputs, outputs poisoned with NaN before every run.
/// LlamaGraphTests run it inside the fused graph.
/// </summary>
public class SkipRmsNormTests
{
    private const float Epsilon = 1e-5f;

    private static void RequireLibrary() =>
        MachineRequirement.Require(CpuOperators.IsAvailable, "needs libcycleqd_ortops.so, which the build compiles with the system's C++ compiler: " + CpuOperators.WhyUnavailable);

    private static InferenceSession Session()
    {
        var g = new OnnxGraph("skip_rms_norm");
        var f = OnnxElementType.Float;
        string x = g.Input("x", f, "rows", "seq", "width");
        string skip = g.Input("skip", f, "rows", "seq", "width");
        string weight = g.Input("weight", f, "width_w");
        g.DomainNode(CpuOperators.Domain, "SkipRmsNorm", [x, skip, weight], ["normed", "sum"], ("epsilon", Epsilon));
        g.Output("normed", "normed", f, "rows", "seq", "width");
        g.Output("sum", "sum", f, "rows", "seq", "width");
        using var so = new SessionOptions();
        return CpuOperators.CreateSession(g.ToModelBytes(), so);
    }

    private static (float[] Normed, float[] Sum) Run(InferenceSession session, float[] x, float[] skip, float[] weight, long[] shape)
    {
        var normed = Enumerable.Repeat(float.NaN, x.Length).ToArray();
        var sum = Enumerable.Repeat(float.NaN, x.Length).ToArray();
        using var xv = OrtValue.CreateTensorValueFromMemory(x, shape);
        using var sv = OrtValue.CreateTensorValueFromMemory(skip, shape);
        using var wv = OrtValue.CreateTensorValueFromMemory(weight, [weight.Length]);
        using var nv = OrtValue.CreateTensorValueFromMemory(normed, shape);
        using var rv = OrtValue.CreateTensorValueFromMemory(sum, shape);
        using var binding = session.CreateIoBinding();
        binding.BindInput("x", xv);
        binding.BindInput("skip", sv);
        binding.BindInput("weight", wv);
        binding.BindOutput("normed", nv);
        binding.BindOutput("sum", rv);
        using var runOptions = new RunOptions();
        session.RunWithBinding(runOptions, binding);
        return (normed, sum);
    }

    [Theory]
    [InlineData(64, 1, 64)]      // a decoding step of stories260K / TinySkills at batch 64
    [InlineData(3, 5, 13)]       // a width with a tail shorter than a vector
    [InlineData(1, 1, 4096)]     // Llama-3-8B's hidden size
    [InlineData(2, 40, 1024)]    // large enough to be divided among threads
    public void MatchesFloat64(int rows, int seq, int width)
    {
        RequireLibrary();
        var rng = new Random(rows * 1000 + seq * 10 + width);
        int n = rows * seq;
        float[] Random(int count, double scale) => Enumerable.Range(0, count).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale)).ToArray();
        var x = Random(n * width, 3);
        var skip = Random(n * width, 1);
        var weight = Random(width, 2);
        using var session = Session();
        var (normed, sum) = Run(session, x, skip, weight, [rows, seq, width]);
        double errSq = 0, refSq = 0, sumErr = 0;
        for (int r = 0; r < n; r++)
        {
            double squares = 0;
            for (int i = 0; i < width; i++)
            {
                double s = (double)x[r * width + i] + skip[r * width + i];
                squares += s * s;
                sumErr = Math.Max(sumErr, Math.Abs(sum[r * width + i] - s));
            }
            double scale = 1 / Math.Sqrt(squares / width + Epsilon);
            for (int i = 0; i < width; i++)
            {
                double expected = ((double)x[r * width + i] + skip[r * width + i]) * scale * weight[i];
                double got = normed[r * width + i];
                errSq += (got - expected) * (got - expected);
                refSq += expected * expected;
            }
        }
        // The sum is one float addition: exact to rounding (and never NaN, which would fail the comparison).
        Assert.True(sumErr <= 1e-6, $"largest error of the sum {sumErr:E3}");
        double rel = Math.Sqrt(errSq / refSq);
        Assert.True(rel < 1e-6, $"relative error {rel:E3}");
    }

    [Fact]
    public void AWeightOfTheWrongLength_IsRefusedNamingTheShapes()
    {
        RequireLibrary();
        using var session = Session();
        var e = Assert.Throws<OnnxRuntimeException>(() => Run(session, new float[16], new float[16], new float[7], [2, 1, 8]));
        Assert.Contains("weight [7]", e.Message);
        Assert.Contains("x [2, 1, 8]", e.Message);
    }
}
