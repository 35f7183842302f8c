namespace CycleQD.Tasks.AgentBenchDb;

/// <summary>How the AgentBench DB tables are laid out on the server.</summary>
public enum DbLayout
{
    /// <summary>One database per sample: samples cannot see or break each other's tables.</summary>
    Isolated,

    /// <summary>
    /// As the reference: every table created up front in one server, the database named after the
    /// table, so equal names collide (rows merge, the first to finish drops the other's table).
    /// Scores are comparable with published numbers.
    /// </summary>
    Reference,
}
