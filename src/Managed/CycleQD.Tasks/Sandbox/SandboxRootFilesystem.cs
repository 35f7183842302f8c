namespace CycleQD.Tasks.Sandbox;

/// <summary>
/// A read-only root file system for a sandbox (see <see cref="SandboxRequest.RootFilesystem"/>):
/// the sandbox sees this tree as its / through an overlay whose writes go to a private tmpfs of at
/// most <see cref="WritableBytes"/>, and runs in a user namespace that maps ids
/// 0..<see cref="UidCount"/>-1 to host ids <see cref="UidBase"/>.., the owners of the tree's files.
/// </summary>
/// <param name="Root">The tree on the host (its owners already shifted by <paramref name="UidBase"/>).</param>
/// <param name="UidBase">Host uid (and gid) of uid 0 inside.</param>
/// <param name="UidCount">How many ids are mapped.</param>
public sealed record SandboxRootFilesystem(string Root, long UidBase, long UidCount)
{
    /// <summary>Bound on everything the sandbox writes anywhere in its file system (the overlay's tmpfs).</summary>
    public long WritableBytes { get; init; } = 512L << 20;
}
