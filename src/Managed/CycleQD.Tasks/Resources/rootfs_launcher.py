# Starts one sandbox on the pinned root file system (BubblewrapSandbox, root file system mode).
# Runs on the host as root, under the run's rlimits, and ends by exec'ing bubblewrap:
#   1. a private mount namespace: a size-bounded tmpfs in SCRATCH holding the overlay's upper and
#      work folders, and the overlay (lower = the read-only ROOTFS) at SCRATCH/m, mounted as root
#      so it works on every kernel that runs Docker (no unprivileged overlay needed);
#   2. drops to the run's unprivileged host uid/gid and creates a user namespace owned by it (so
#      the rlimit on processes bounds the whole sandbox, whatever uids it uses inside);
#   3. waits for one line on stdin: meanwhile the caller (root) writes the namespace's uid_map and
#      gid_map (0..COUNT-1 inside = UID_BASE.. on the host, the owners of ROOTFS);
#   4. becomes uid/gid 0 inside and execs bubblewrap, which keeps the capabilities it is told to
#      keep; they are capabilities of that user namespace only.
# Usage: python3 -I -S -c SOURCE ROOTFS SCRATCH WRITABLE_BYTES HOST_UID -- BWRAP ARGS...
import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_NOSUID = 2
MS_NODEV = 4
MS_REC = 16384
MS_PRIVATE = 1 << 18

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def fail(what):
    e = ctypes.get_errno()
    sys.stderr.write("sandbox launcher: %s: %s\n" % (what, os.strerror(e)))
    sys.exit(125)


def mount(source, target, fstype, flags, data):
    if libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                  flags, data.encode() if data else None) != 0:
        fail("mount %s on %s" % (fstype or source, target))


def main():
    rootfs, scratch, size, host_uid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if sys.argv[5] != "--":
        sys.exit("sandbox launcher: usage: ROOTFS SCRATCH WRITABLE_BYTES HOST_UID -- BWRAP ARGS...")
    bwrap = sys.argv[6:]
    top = os.stat(rootfs)  # the owner of the image's / (uid 0 inside)

    if libc.unshare(CLONE_NEWNS) != 0:
        fail("unshare(CLONE_NEWNS)")
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "size=%d,mode=0755" % size)
    upper, work, merged = (os.path.join(scratch, n) for n in ("u", "w", "m"))
    for d in (upper, work, merged):
        os.mkdir(d)
    # The overlay's root takes its owner and mode from the upper folder.
    os.chown(upper, top.st_uid, top.st_gid)
    os.chmod(upper, 0o755)
    mount("overlay", merged, "overlay", 0, "lowerdir=%s,upperdir=%s,workdir=%s" % (rootfs, upper, work))

    os.setgroups([])
    os.setresgid(host_uid, host_uid, host_uid)
    os.setresuid(host_uid, host_uid, host_uid)
    if libc.unshare(CLONE_NEWUSER) != 0:
        fail("unshare(CLONE_NEWUSER)")
    # The caller writes the id maps, then one line.
    line = b""
    while not line.endswith(b"\n"):
        b = os.read(0, 1)
        if not b:
            sys.exit(125)  # the caller went away before the maps were written
        line += b
    os.setresgid(0, 0, 0)
    os.setgroups([])
    os.setresuid(0, 0, 0)
    os.execv(bwrap[0], bwrap)


main()
