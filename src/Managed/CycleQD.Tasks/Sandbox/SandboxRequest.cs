namespace CycleQD.Tasks.Sandbox;

/// <summary>
/// One command to run in a fresh sandbox. Inside it sees a read-only view of the host's system
/// folders (/usr, /etc and the /bin, /lib… links), a private /proc, a minimal read-only /dev, an
/// empty writable tmpfs at <see cref="WorkDir"/> (also the current directory), at /tmp and at
/// /dev/shm, each of a bounded size (<see cref="SandboxLimits.WorkDirBytes"/>,
/// <see cref="SandboxLimits.TmpfsBytes"/>), no network and no other host files, except
/// <see cref="InputFiles"/>, which appear read-only under <see cref="InputDir"/>.
/// </summary>
public sealed record SandboxRequest
{
    /// <summary>Program and arguments, resolved inside the sandbox (e.g. ["python3", "-c", "…"]).</summary>
    public required IReadOnlyList<string> Command { get; init; }

    /// <summary>Text written to the process's stdin, then closed; null gives an empty stdin.</summary>
    public string? Stdin { get; init; }

    /// <summary>Files (relative name → content) made visible read-only under <see cref="InputDir"/>.</summary>
    public IReadOnlyDictionary<string, string>? InputFiles { get; init; }

    /// <summary>Limits for this run.</summary>
    public SandboxLimits Limits { get; init; } = new();

    /// <summary>Further folders mounted as private writable tmpfs (e.g. "/root", "/home", "/var"), each of <see cref="SandboxLimits.TmpfsBytes"/>.</summary>
    public IReadOnlyList<string> WritableDirs { get; init; } = [];

    /// <summary>Host folders mounted read-only at the given sandbox paths (host → sandbox), after the writable dirs.</summary>
    public IReadOnlyList<(string Host, string Sandbox)> ReadOnlyBinds { get; init; } = [];

    /// <summary>Host folders mounted read-write at the given sandbox paths (host → sandbox); the sandbox's uid must be allowed to write there.</summary>
    public IReadOnlyList<(string Host, string Sandbox)> WritableBinds { get; init; } = [];

    /// <summary>Host name inside the sandbox's UTS namespace; null leaves bubblewrap's default.</summary>
    public string? Hostname { get; init; }

    /// <summary>
    /// Run on this root file system instead of the host's system folders: the tree is the sandbox's
    /// / (read-only underneath, writes go to a bounded private overlay), the sandbox's root is uid 0
    /// of a user namespace that maps a whole id range (users, <c>chown</c>, <c>su</c> work inside), with
    /// Docker's default capabilities of that namespace and none on the host. Needs a root caller.
    /// <see cref="WritableDirs"/>, the binds, <see cref="UidInside"/> and
    /// <see cref="SandboxLimits.WorkDirBytes"/> do not apply; <see cref="InputFiles"/> still appear at
    /// <see cref="InputDir"/>, and the command starts in /.
    /// </summary>
    public SandboxRootFilesystem? RootFilesystem { get; init; }

    /// <summary>
    /// Capabilities (of the sandbox's user namespace, root file system layout only) that the command
    /// starts with beyond a container's. Only for a trusted supervisor that uses them and drops them
    /// from its bounding, inheritable and ambient sets before it runs anything else.
    /// </summary>
    internal IReadOnlyList<string> SupervisorCapabilities { get; init; } = [];

    /// <summary>User id inside the sandbox's user namespace (65534 = nobody; 0 for a container-like root with no capabilities).</summary>
    public int UidInside { get; init; } = 65534;

    /// <summary>Environment variables (the host environment is never passed through).</summary>
    public IReadOnlyDictionary<string, string>? Environment { get; init; }

    /// <summary>Where the private writable tmpfs is mounted; the command starts there.</summary>
    public const string WorkDir = "/work";

    /// <summary>Where <see cref="InputFiles"/> appear.</summary>
    public const string InputDir = "/input";
}
