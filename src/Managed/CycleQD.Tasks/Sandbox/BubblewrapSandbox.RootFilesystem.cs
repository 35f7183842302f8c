using System.Diagnostics;
using System.Globalization;
using System.Text;
using CycleQD.Tasks.Python;

namespace CycleQD.Tasks.Sandbox;

/// <summary>Sandboxes on a pinned root file system (<see cref="SandboxRequest.RootFilesystem"/>).</summary>
public sealed partial class BubblewrapSandbox
{
    /// <summary>
    /// Docker's default capability set. Held by the sandbox's root in its own user namespace only:
    /// they act on that namespace's processes and on files whose owners it maps (the overlay on the
    /// pinned tree), never on the host.
    /// </summary>
    internal static readonly string[] ContainerCapabilities =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP",
    ];

    private static readonly Lazy<string> LauncherSource = new(() => EmbeddedScripts.Read("rootfs_launcher.py"));

    private SandboxProcess StartOnRootFilesystem(SandboxRequest request, SandboxRootFilesystem rootfs)
    {
        if (!OperatingSystem.IsLinux()) throw new PlatformNotSupportedException("the sandbox needs Linux");
        if (!IsRoot)
            throw new SandboxUnavailableException("a sandbox on a root file system maps a range of user ids into its user namespace, which only root may do: run as root");
        if (!Directory.Exists(rootfs.Root))
            throw new SandboxUnavailableException($"the sandbox's root file system {rootfs.Root} does not exist");
        // The overlay's mount options are separated by ',' (and lower layers by ':').
        if (rootfs.Root.IndexOfAny([',', ':']) >= 0 || Path.GetTempPath().IndexOfAny([',', ':']) >= 0)
            throw new SandboxUnavailableException($"the root file system path {rootfs.Root} and the temp folder {Path.GetTempPath()} must not contain ',' or ':' (overlay mount options)");
        string python = FindTool("python3") ?? throw new SandboxUnavailableException("python3 is not installed on the host; it runs the sandbox's root file system launcher (./build.sh setup installs it)");
        UidLease? lease = null;
        string? inputDir = null, scratch = null;
        Process? process = null;
        try
        {
            lease = TakeUid();
            int uid = lease.Uid;
            if (request.InputFiles is { Count: > 0 } files)
                inputDir = WriteInputFiles(files);
            scratch = Directory.CreateTempSubdirectory("cycleqd-rootfs-").FullName;
            File.SetUnixFileMode(scratch, (UnixFileMode)0b111_101_101);
            process = Spawner.Start(BuildRootFilesystemStartInfo(request, rootfs, python, uid, scratch, inputDir));
            string userNamespace = WriteIdMaps(process, rootfs);
            process.StandardInput.Write('\n');
            process.StandardInput.Flush();
            string? input = inputDir, work = scratch;
            var held = lease;
            return new SandboxProcess(process, () =>
            {
                held.Dispose();
                if (input != null) TryDeleteDirectory(input);
                TryDeleteDirectory(work);
            }, pid => SandboxProcess.InUserNamespace(pid, userNamespace));
        }
        catch
        {
            if (process != null)
            {
                try { if (!process.HasExited) process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                process.Dispose();
            }
            lease?.Dispose();
            if (inputDir != null) TryDeleteDirectory(inputDir);
            if (scratch != null) TryDeleteDirectory(scratch);
            throw;
        }
    }

    internal ProcessStartInfo BuildRootFilesystemStartInfo(SandboxRequest request, SandboxRootFilesystem rootfs, string python, int hostUid, string scratch, string? inputDir)
    {
        var l = request.Limits;
        var inv = CultureInfo.InvariantCulture;
        var psi = RedirectedStartInfo();
        psi.FileName = _prlimit;
        var args = psi.ArgumentList;
        foreach (var a in new[]
                 {
                     $"--cpu={l.CpuSeconds}", $"--as={l.AddressSpaceBytes}", $"--fsize={l.FileSizeBytes}",
                     $"--nproc={l.Processes}", $"--nofile={l.OpenFiles}", "--core=0", "--",
                     python, "-I", "-S", "-c", LauncherSource.Value,
                     rootfs.Root, scratch, rootfs.WritableBytes.ToString(inv), hostUid.ToString(inv), "--",
                     _bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                     "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                 })
            args.Add(a);
        foreach (var cap in ContainerCapabilities.Concat(request.SupervisorCapabilities))
        {
            args.Add("--cap-add"); args.Add(cap);
        }
        foreach (var a in new[] { "--bind", Path.Combine(scratch, "m"), "/", "--proc", "/proc", "--dev", "/dev" }) args.Add(a);
        // The one folder of /proc that only host root may read: a container's root reads it, so a
        // `find /` there exits 0. An empty read-only folder stands in for it.
        foreach (var a in new[] { "--tmpfs", "/proc/tty/driver", "--remount-ro", "/proc/tty/driver" }) args.Add(a);
        if (inputDir != null)
        {
            args.Add("--ro-bind"); args.Add(inputDir); args.Add(SandboxRequest.InputDir);
        }
        if (request.Hostname != null)
        {
            args.Add("--hostname"); args.Add(request.Hostname);
        }
        args.Add("--chdir"); args.Add("/");
        AddEnvironmentAndCommand(args, request, "/root");
        return psi;
    }

    /// <summary>
    /// Waits until the launcher has created its user namespace, then maps the id range into it.
    /// Only a writer with CAP_SETUID on the host may map more than its own id, hence root here.
    /// Returns the namespace's /proc link text ("user:[INODE]"): every process of the sandbox is in it.
    /// </summary>
    private static string WriteIdMaps(Process process, SandboxRootFilesystem rootfs)
    {
        string own = new FileInfo("/proc/self/ns/user").LinkTarget ?? throw new SandboxUnavailableException("cannot read /proc/self/ns/user");
        string ns = $"/proc/{process.Id}/ns/user";
        var sw = Stopwatch.StartNew();
        string? target = null;
        while (true)
        {
            if (process.HasExited)
                throw new SandboxUnavailableException($"the sandbox launcher exited ({process.ExitCode}) before it created its user namespace: {process.StandardError.ReadToEnd().Trim()}");
            try { target = new FileInfo(ns).LinkTarget; } catch (IOException) { } catch (UnauthorizedAccessException) { }
            if (target != null && target != own) break;
            if (sw.Elapsed > TimeSpan.FromSeconds(30))
                throw new SandboxUnavailableException("the sandbox launcher did not create its user namespace within 30 s");
            Thread.Sleep(1);
        }
        byte[] map = Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"0 {rootfs.UidBase} {rootfs.UidCount}\n"));
        foreach (string file in new[] { "uid_map", "gid_map" })
        {
            // One write at offset 0: the kernel accepts a map only that way.
            using var handle = File.OpenHandle($"/proc/{process.Id}/{file}", FileMode.Open, FileAccess.Write);
            RandomAccess.Write(handle, map, 0);
        }
        return target;
    }
}
