namespace CycleQD.Runs;

/// <summary>A run directory that cannot be created, read or continued; the message names the path.</summary>
public sealed class RunDirectoryException(string message) : Exception(message);
