using System.CommandLine;
using System.Globalization;
using CycleQD.Cuda;
using CycleQD.Cuda.Checks;
using CycleQD.Cuda.Planning;
using CycleQD.Tensors;

namespace CycleQD.Cli.Commands.Bench;

/// <summary>`cycleqd bench kernels [--check]`: the GPU kernels against float64 CPU references, timed; `cycleqd bench sam`: see <see cref="SamBenchCommand"/>.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var bench = new Command("bench", "Benchmarks.");
        bench.Subcommands.Add(KernelsCommand());
        bench.Subcommands.Add(SamBenchCommand.Create());
        return bench;
    }

    private static Command KernelsCommand()
    {
        var check = new Option<bool>("--check") { Description = "Exit 1 when any kernel's relative error exceeds its tolerance." };
        var repeats = NumericOptions.Whole("--repeats", "Timed runs per kernel (median reported), at least 20.", 20, NumericRange.AtLeast(20));
        var shapes = new Option<string?>("--shapes") { Description = "Comma-separated rowsxcols weight shapes (default: the Llama-3-8B ones)." };
        var svdMaxRows = NumericOptions.Whole("--svd-max-rows", "Run the SVD comparison only for shapes whose larger side is at most this.", 14336, NumericRange.AtLeast(1));
        var oversampling = NumericOptions.Whole("--svd-oversampling", "Randomized SVD oversampling p; -1: max(10, k/2), the mutation's default.", -1, NumericRange.AtLeast(-1));
        var power = NumericOptions.Whole("--svd-power-iterations", "Randomized SVD power iterations q.", 3, NumericRange.AtLeast(0));
        var noSvd = new Option<bool>("--no-svd") { Description = "Skip the SVD comparison." };
        var device = NumericOptions.Whole("--device", "GPU ordinal.", 0, NumericRange.AtLeast(0));
        var cmd = new Command("kernels", "Run every CUDA kernel on the GPU against a float64 CPU reference; print error, median time, GB/s or TFLOP/s and the ratio to copy bandwidth; then full vs randomized SVD.")
        {
            check, repeats, shapes, svdMaxRows, oversampling, power, noSvd, device,
        };
        cmd.SetAction(parse =>
        {
            var options = new KernelCheckOptions(
                ParseShapes(parse.GetValue(shapes)),
                Repeats: parse.GetValue(repeats),
                SvdMaxRows: parse.GetValue(svdMaxRows),
                SvdOversampling: parse.GetValue(oversampling),
                SvdPowerIterations: parse.GetValue(power));
            if (options.Repeats < 20) throw new CliUsageException($"--repeats {options.Repeats}: at least 20 timed runs are needed for a median");
            if (options.SvdOversampling < -1 || options.SvdPowerIterations < 0) throw new CliUsageException("--svd-oversampling must be >= 0 (or -1) and --svd-power-iterations >= 0");
            return Run(parse.InvocationConfiguration.Output, options, parse.GetValue(check), !parse.GetValue(noSvd), parse.GetValue(device));
        });
        return cmd;
    }

    internal static IReadOnlyList<(int Rows, int Cols)> ParseShapes(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return KernelCheckOptions.Llama3_8BShapes;
        var list = new List<(int, int)>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var dims = part.Split('x', 'X');
            if (dims.Length != 2 || !int.TryParse(dims[0], CultureInfo.InvariantCulture, out int r) || !int.TryParse(dims[1], CultureInfo.InvariantCulture, out int c) || r <= 0 || c <= 0)
                throw new CliUsageException($"--shapes: '{part}' is not a shape like 4096x14336");
            list.Add((r, c));
        }
        return list;
    }

    /// <exception cref="CudaUnavailableException">no driver or GPU (CliApp prints the reason).</exception>
    private static int Run(TextWriter o, KernelCheckOptions options, bool check, bool svd, int ordinal)
    {
        using var ctx = CudaContext.Create(ordinal);
        var status = CudaDeviceProbe.Probe();
        o.WriteLine($"cycleqd bench kernels: {ctx.Device.Name} (compute {ctx.Device.ComputeCapability}, {ctx.Device.Multiprocessors} SMs, {ctx.Device.TotalMemoryBytes / (double)(1L << 30):F1} GiB, L2 {ctx.L2CacheBytes >> 20} MiB), driver {status.DriverVersion}");
        o.WriteLine($"  {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; median of {options.Repeats} runs after {options.Warmup} warm-up, L2 flushed before each; errors vs float64 CPU references");
        var (cublas, cusolver) = CudaDeviceProbe.MathLibraries();
        o.WriteLine($"  cuBLAS {cublas ?? "NOT FOUND"}; cuSOLVER {cusolver ?? "NOT FOUND"}");
        var (free, _) = ctx.MemoryInfo();
        var plan = DeviceMemoryPlan.Create(Llama3_8B, DType.BF16, free);
        o.WriteLine($"  Llama-3-8B bf16 memory plan on this card: peak {plan.PeakBytes / (double)(1L << 30):F1} GiB of {free / (double)(1L << 30):F1} GiB free ({(plan.Fits ? "fits" : "does not fit")})");

        using var bench = new KernelCheck(ctx, options);
        double copy = bench.CopyBandwidth();
        o.WriteLine($"  device-to-device copy: {copy:F0} GB/s (1 GiB, read + write)");
        o.WriteLine();
        var table = new TextTable("kernel", "shape", "rel. error", "tolerance", "median ms", "throughput", "vs copy", "ok", "note").AlignRight(2, 3, 4, 5, 6);
        var rows = new List<KernelCheckRow>();
        void Add(KernelCheckRow r)
        {
            rows.Add(r);
            string[] cells =
            [
                r.Kernel, r.Shape, Sci(r.RelativeError), Sci(r.Tolerance), double.IsNaN(r.MedianMs) ? "-" : r.MedianMs.ToString("F3", CultureInfo.InvariantCulture),
                r.Throughput, r.CopyRatio is { } c ? c.ToString("F2", CultureInfo.InvariantCulture) : "-", r.Passed ? "yes" : "NO", r.Note,
            ];
            table.Add(cells);
            // Each row as it comes, so a long check shows progress and a crash keeps what was measured.
            o.WriteLine("  .. " + string.Join(" | ", cells));
            o.Flush();
        }
        // A failing routine becomes a failed row and the check goes on with the next shape; after
        // a sticky CUDA error (illegal address) the following rows fail too, each saying why.
        void Drain(string what, string shape, IEnumerable<KernelCheckRow> source)
        {
            using var e = source.GetEnumerator();
            while (true)
            {
                try
                {
                    if (!e.MoveNext()) return;
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    Add(new KernelCheckRow(what, shape, double.NaN, double.NaN, "-", null, $"FAILED after the rows above: {ex.GetType().Name}: {ex.Message}", 0));
                    return;
                }
                Add(e.Current);
            }
        }
        foreach (var (r, c) in options.Shapes) Drain("kernels", $"{r}x{c}", bench.KernelsOn(r, c, copy));
        if (svd)
        {
            var seen = new HashSet<(int, int)>();
            foreach (var (r, c) in options.Shapes)
                if (seen.Add((Math.Max(r, c), Math.Min(r, c)))) Drain("svd", $"{Math.Max(r, c)}x{Math.Min(r, c)}", bench.SvdOn(r, c));
        }
        o.WriteLine();
        table.Write(o);
        int failed = rows.Count(r => !r.Passed);
        o.WriteLine();
        o.WriteLine(failed == 0 ? $"all {rows.Count} rows within tolerance" : $"{failed} of {rows.Count} rows above tolerance");
        return check && failed > 0 ? CliApp.ExitBadInput : 0;
    }

    private static string Sci(double x) => double.IsNaN(x) ? "-" : x.ToString("0.0e+0", CultureInfo.InvariantCulture);

    /// <summary>Meta-Llama-3-8B's config.json sizes.</summary>
    internal static readonly LlamaConfig Llama3_8B = new()
    {
        ModelType = "llama", HiddenSize = 4096, IntermediateSize = 14336, NumHiddenLayers = 32, NumAttentionHeads = 32,
        NumKeyValueHeads = 8, VocabSize = 128256, HeadDim = 128,
    };
}
