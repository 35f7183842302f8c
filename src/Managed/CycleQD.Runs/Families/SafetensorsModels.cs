using CycleQD.Core;
using CycleQD.Core.Compute;
using CycleQD.Tensors;

namespace CycleQD.Runs.Families;

/// <summary>The base and expert weights of a real-model run (model.base, model.experts), read from safetensors.</summary>
internal static class SafetensorsModels
{
    /// <summary>The base model's folder (model.base, or the folder of a .safetensors file): where config.json and the tokenizer are.</summary>
    public static string Folder(ExperimentConfig config) =>
        Directory.Exists(config.Model.BasePath) ? config.Model.BasePath! : Path.GetDirectoryName(config.Model.BasePath)!;

    /// <summary>Checks that the base and every expert exist, have the same tensor names and shapes, and hold only finite values.</summary>
    /// <exception cref="ConfigurationException">a missing file or an expert that does not fit the base.</exception>
    /// <exception cref="TensorFormatException">a NaN or infinite value, naming the file and the tensor.</exception>
    public static void Check(ExperimentConfig config)
    {
        string basePath = config.Model.BasePath!;
        if (!File.Exists(basePath) && !Directory.Exists(basePath)) throw new ConfigurationException($"model.base: {basePath} not found");
        using var baseModel = SafetensorsModel.Open(basePath);
        baseModel.ThrowIfNonFinite();
        foreach (var (task, path) in config.Model.ExpertPaths)
        {
            if (!File.Exists(path) && !Directory.Exists(path)) throw new ConfigurationException($"model.experts.{task}: {path} not found");
            using var expert = SafetensorsModel.Open(path);
            string? diff = ModelCompatibility.FirstDifference(baseModel, expert);
            if (diff != null) throw new ConfigurationException($"model.experts.{task}: incompatible with the base model: {diff}");
            expert.ThrowIfNonFinite();
        }
    }

    /// <summary>
    /// Uploads the base and the experts (tensors in name order) to <paramref name="backend"/>. On a
    /// GPU in resident mode every weight set of the run stays on the device (base, experts, child, two
    /// parents); in streamed mode only the children, staging, the mutation's workspace and the
    /// evaluator's memory are (<see cref="RunResidency.StreamingPlan"/>). A card too small for its mode is refused
    /// before the first upload, with the numbers.
    /// </summary>
    /// <exception cref="Cuda.DeviceMemoryException">the run's weight sets do not fit the GPU's free memory.</exception>
    public static RunModels Load(ExperimentConfig config, IComputeBackend backend)
    {
        IWeightSet baseWeights;
        using (var baseFile = SafetensorsModel.Open(config.Model.BasePath!))
        {
            if (backend is Cuda.Backend.CudaComputeBackend gpu)
            {
                var specs = baseFile.Tensors.Select(t => new TensorSpec(t.Name, t.DType, t.Shape)).ToArray();
                if (gpu.Residency == Cuda.Backend.WeightResidency.Resident)
                    gpu.EnsureResidentFits(specs, config.Model.ExpertPaths.Count + Cuda.Backend.CudaComputeBackend.RunSetsBesidesExperts, config.Options.Mutation);
                else
                    RunResidency.StreamingPlan(config, specs, gpu.FreeDeviceBytes).EnsureFits(gpu.Device.Name);
            }
            baseWeights = backend.Upload(new SafetensorsHostSource(baseFile, sortByName: true));
        }
        var experts = new List<KeyValuePair<string, IWeightSet>>();
        try
        {
            foreach (var (task, path) in config.Model.ExpertPaths)
            {
                using var file = SafetensorsModel.Open(path);
                experts.Add(new(task, backend.Upload(new SafetensorsHostSource(file, sortByName: true))));
            }
        }
        catch
        {
            new RunModels(baseWeights, experts).Dispose();
            throw;
        }
        return new RunModels(baseWeights, experts);
    }
}
