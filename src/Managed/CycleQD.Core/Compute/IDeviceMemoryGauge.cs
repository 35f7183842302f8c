namespace CycleQD.Core.Compute;

/// <summary>
/// A compute backend that counts the device memory it allocates: the engine records the high-water
/// mark of each generation (<see cref="Engine.GenerationRecord.PeakDeviceBytes"/>).
/// </summary>
public interface IDeviceMemoryGauge
{
    /// <summary>The most device bytes the backend held at once since the last <see cref="ResetPeak"/>.</summary>
    long PeakBytes { get; }

    /// <summary>Starts a new high-water mark at the bytes held now.</summary>
    void ResetPeak();
}
