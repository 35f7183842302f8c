using System.Runtime.InteropServices;
using System.Security.Cryptography;
using CycleQD.Core.Compute;
using CycleQD.Core.Engine;
using CycleQD.Core.Synthetic;
using CycleQD.Cpu;
using CycleQD.Tensors;

namespace CycleQD.Runs.Tests;

/// <summary>
/// Children that overflow float32 during the search: the CPU backend (SVD mutation) or the
/// synthetic evaluator raise <see cref="NonFiniteWeightsException"/>, the engine scores the child 0,
/// keeps it out of the archives, records why, and the run goes on.
/// </summary>
public class NonFiniteChildTests
{
    /// <summary>Elites in memory, keyed by a hash of their bytes.</summary>
    internal sealed class MemoryEliteStore : IEliteStore
    {
        private readonly Dictionary<string, InMemoryTensorSource> _elites = new(StringComparer.Ordinal);

        public string Add(IComputeBackend backend, IWeightSet weights)
        {
            var src = new InMemoryTensorSource();
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            for (int i = 0; i < weights.Tensors.Count; i++)
            {
                var bytes = new byte[weights.Tensors[i].ByteLength];
                backend.Download(weights, i, bytes);
                hash.AppendData(bytes);
                src.Add(weights.Tensors[i], bytes);
            }
            string id = Convert.ToHexString(hash.GetHashAndReset())[..16];
            _elites.TryAdd(id, src);
            return id;
        }

        public IWeightSet Open(IComputeBackend backend, string id) => backend.Upload(_elites[id]);

        public void RemoveAllExcept(IReadOnlySet<string> live)
        {
            foreach (var id in _elites.Keys.Where(k => !live.Contains(k)).ToList()) _elites.Remove(id);
        }
    }

    private const string Poisoned = "layers.0.weight";

    /// <summary>Sets element 0 of <paramref name="tensor"/> (F32) in place.</summary>
    private static InMemoryTensorSource Set(InMemoryTensorSource src, string tensor, float value)
    {
        var ro = src.GetBytes(tensor);
        var bytes = MemoryMarshal.CreateSpan(ref MemoryMarshal.GetReference(ro), ro.Length);
        MemoryMarshal.Cast<byte, float>(bytes)[0] = value;
        return src;
    }

    private static List<GenerationRecord> Run(CycleQDOptions options, int generations, out CycleQDEngine finished)
    {
        var problem = new SyntheticProblem(options.Tasks, new SyntheticProblemOptions(Layers: 2, Rows: 24, Cols: 16, DType: DType.F32, Seed: 5));
        var backend = new CpuComputeBackend();
        var baseSet = backend.Upload(problem.BaseModel());
        // Expert a carries the largest float32 in one weight: finite itself, but a child that takes
        // a share of it above 1 (crossover) or scales it up (SVD mutation) overflows.
        var experts = options.Tasks.Select((t, k) => new Expert(t, backend.Upload(k == 0 ? Set(problem.Expert(k), Poisoned, float.MaxValue) : problem.Expert(k)))).ToList();
        var engine = new CycleQDEngine(options, backend, baseSet, experts, problem, new MemoryEliteStore());
        var records = new List<GenerationRecord>();
        engine.GenerationCompleted += records.Add;
        engine.InitializeAsync().GetAwaiter().GetResult();
        engine.RunAsync(generations).GetAwaiter().GetResult();
        finished = engine;
        return records;
    }

    [Theory]
    // SVD mutation with w_max 4: a child holding half of float.MaxValue overflows when r > 1.
    [InlineData("svd", 4.0, 0.03, "after the SVD mutation")]
    // Crossover weights with σ = 3: a child taking more than 1.13 of expert a overflows before the SVD.
    [InlineData("svd", 0.3, 3.0, "in the child's task vector after crossover")]
    // No mutation: the evaluator is the first to read the overflowed child.
    [InlineData("none", 0.3, 3.0, "in the candidate")]
    public void Run_ChildOverflows_ScoredZeroNotArchivedRecorded_RunContinues(string mutation, double wMax, double crossoverStd, string where)
    {
        var options = new CycleQDOptions
        {
            Tasks = ["a", "b", "c"],
            Bins = 6,
            Seed = 11,
            Crossover = new CrossoverOptions(1.0, crossoverStd),
            Mutation = new MutationOptions(mutation == "svd" ? MutationKind.Svd : MutationKind.None, SvdScaleMax: wMax),
        };
        const int generations = 24;
        var records = Run(options, generations, out var engine);
        using (engine)
        {
            Assert.Equal(generations, engine.NextGeneration);
            Assert.Equal(generations, records.Count);
            var bad = records.Where(r => r.NonFinite != null).ToList();
            Assert.NotEmpty(bad);
            Assert.Contains(bad, r => r.NonFinite!.Contains(where, StringComparison.Ordinal));
            foreach (var r in bad)
            {
                Assert.StartsWith($"tensor '{Poisoned}': ", r.NonFinite);
                Assert.Contains("NaN and", r.NonFinite);
                Assert.All(r.Scores, s => Assert.Equal(0.0, s));
                Assert.Null(r.ChildId);
                Assert.Empty(r.Insertions);
                Assert.Contains("expert:a", r.Parents);
            }
            // The other children were scored as usual.
            Assert.Contains(records, r => r.NonFinite is null && r.Scores.Any(s => s > 0));
            var archived = engine.Archives.SelectMany(a => a.Cells.Values).Select(e => e.Generation).ToHashSet();
            Assert.DoesNotContain(bad, r => archived.Contains(r.Generation));
        }
    }

    [Fact]
    public void MutateSvd_NaNInChild_ThrowsNamingTheTensor_InsteadOfALapackCode()
    {
        using var backend = new CpuComputeBackend();
        var src = new InMemoryTensorSource()
            .Add("w.bias", DType.F32, [3], new float[] { 1, 2, 3 })
            .Add("w.weight", DType.BF16, [3, 2], new float[] { 1, 2, 3, 4, 5, 6 });
        using var baseSet = backend.Upload(src);
        var childSrc = new InMemoryTensorSource()
            .Add("w.bias", DType.F32, [3], new float[] { 1, 2, 3 })
            .Add("w.weight", DType.BF16, [3, 2], new float[] { 1, float.NaN, 3, float.PositiveInfinity, 5, 6 });
        using var child = backend.Upload(childSrc);
        var e = Assert.Throws<NonFiniteWeightsException>(() => backend.MutateSvd(child, baseSet, new MutationOptions(), 1, 0));
        Assert.Equal("w.weight", e.TensorName);
        Assert.Equal("tensor 'w.weight': 1 NaN and 1 infinite value(s), the first at element 1 in the child's task vector after crossover (float32 overflow)", e.Message);
    }
}
