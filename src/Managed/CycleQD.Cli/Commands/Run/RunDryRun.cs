using System.Globalization;
using CycleQD.Runs;
using CycleQD.Runs.Families;
using CycleQD.Runs.Final;
using CycleQD.Tensors;

namespace CycleQD.Cli.Commands.Run;

/// <summary>
/// `run --dry-run`: every check a run makes before it writes (experiment, models, task environments),
/// then what the run will cost; nothing is written.
/// </summary>
internal static class RunDryRun
{
    public static int Execute(string experimentPath, int? generations, ulong? seed, TextWriter o, RunOverrides? overrides = null)
    {
        var (config, family, splits) = RunSession.Prepare(experimentPath, seed, overrides: overrides);
        var inv = CultureInfo.InvariantCulture;
        int n = config.Options.Tasks.Count;
        int gens = generations ?? config.Generations;
        o.WriteLine($"dry run of {Path.GetFullPath(experimentPath)}: experiment, models and task environments checked; nothing written");
        o.WriteLine($"family {family.Name}; tasks {string.Join(", ", config.Options.Tasks)}; seed {config.Options.Seed}; {gens} generations");

        var costs = family.Costs(config, splits);
        var table = new TextTable("task", "search split", "samples", "report split", "model calls ≤", "generated tokens ≤", "counted as");
        foreach (var c in costs)
        {
            var s = splits[c.Task];
            string report = s.ReportIds is { } r ? $"{s.Report} ({r.Count})" : s.Report;
            table.Add(c.Task, s.Search, c.Samples.ToString(inv), report, c.ModelCalls.ToString("N0", inv), c.MaxGeneratedTokens.ToString("N0", inv), c.Note);
        }
        o.WriteLine("per candidate:");
        table.Write(o);
        long calls = costs.Sum(c => c.ModelCalls), tokens = costs.Sum(c => c.MaxGeneratedTokens);
        int evaluations = n + gens;
        o.WriteLine($"search: {evaluations:N0} evaluations ({n} experts + {gens} children): at most {(calls * evaluations).ToString("N0", inv)} model calls and {(tokens * evaluations).ToString("N0", inv)} generated tokens");
        var (finalSearch, finalReport) = FinalStageBudget.MaxEvaluations(config);
        if (config.FinalMerge.Enabled)
            o.WriteLine($"final stage: at most {finalSearch} evaluations on the search split and {finalReport} on the report split");
        else o.WriteLine("final stage: off");

        if (config.Model.Synthetic is null)
        {
            long elite;
            using (var m = SafetensorsModel.Open(config.Model.BasePath!))
                elite = m.Tensors.Sum(t => t.ByteLength);
            long cells = 0;
            for (int t = 0; t < n; t++) cells += (long)Math.Pow(config.Options.Bins, n - 1);
            long stored = Math.Min(gens, cells);
            o.WriteLine($"storage: {Gb(elite)} per stored elite; at most {stored:N0} stored at once (generations and archive cells bound it): {Gb(elite * stored)}, plus {Gb(elite)} for the final model");
            o.WriteLine($"host memory: base and {n} experts resident ({Gb(elite * (n + 1))}) plus the child and two parents ({Gb(elite * 3)}) on the backend");
        }
        return 0;
    }

    private static string Gb(long bytes) => (bytes / 1e9).ToString(bytes < 1e8 ? "0.####" : "0.##", CultureInfo.InvariantCulture) + " GB";
}
