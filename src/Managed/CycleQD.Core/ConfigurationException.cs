namespace CycleQD.Core;

/// <summary>An experiment setting that cannot be used; the message names the setting at fault.</summary>
public sealed class ConfigurationException(string message) : Exception(message);
