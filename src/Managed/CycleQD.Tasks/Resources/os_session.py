# Stands in for the reference's per-sample Ubuntu container (data README section 2, "Protocol").
# Runs inside the sandbox as the container's root. Reads one JSON request per line on stdin and
# answers one JSON line on stdout:
#   {"op": "exec", "language": "bash"|"python", "script": s, "params": [...]}
#       an independent process (docker exec): bash -c s -- params / python3 -c s params;
#       -> {"exit_code": n, "output": stdout+stderr}
#   {"op": "session"}  starts the interactive `bash --login` on a pseudo-terminal (docker exec -it)
#   {"op": "send", "text": t, "timeout": s, "limit": l}
#       types t + "\n" into that shell, reads until a prompt-like chunk, `timeout` seconds of
#       silence or `limit` seconds in all; the echoed input line is dropped as the reference drops
#       the first frame. -> {"output": text, "timed_out": bool}
# Every output is bounded (MAX_OUTPUT bytes kept, the rest read and dropped), so nothing the agent
# runs can make this process's memory or its answer lines grow without bound. The supervisor is
# not dumpable: the agent's processes (same uid, no capabilities) cannot open its file descriptors
# through /proc or trace it, so they cannot write answers in its name; they can only kill it,
# which fails the sample. It is also out of sight, as `docker exec`'s runtime is outside a
# container: it starts with CAP_SYS_ADMIN (of the sandbox's user namespace), mounts an empty
# read-only folder over its own /proc/PID (so a walk of / meets no unreadable entry), and drops the
# capability from every set before it runs anything of the agent's; without the capability the
# agent cannot unmount that folder, and a new proc mount is refused while /proc has mounts on it.
import base64
import ctypes
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time

PROMPT = re.compile(rb"\x1b.+@.+[#|$] ")
MAX_OUTPUT = 1 << 20
PR_SET_DUMPABLE = 4
BASHRC = r"""
PS1='${debian_chroot:+($debian_chroot)}\u@\h:\w\$ '
case "$TERM" in
xterm*|rxvt*)
    PS1="\[\e]0;${debian_chroot:+($debian_chroot)}\u@\h: \w\a\]$PS1"
    ;;
esac
"""


def prepare_root():
    # What Docker writes into every container: its host name and the hosts file naming it.
    name = socket.gethostname()
    with open("/etc/hostname", "w") as f:
        f.write(name + "\n")
    with open("/etc/hosts", "w") as f:
        f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
                "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n172.17.0.2\t%s\n" % name)
    # Ubuntu's empty /usr/local tree (PATH names /usr/local/sbin and /usr/local/bin).
    for sub in ("bin", "etc", "games", "include", "lib", "sbin", "share", "src"):
        os.makedirs("/usr/local/" + sub, exist_ok=True)
    os.makedirs("/root", exist_ok=True)
    with open("/root/.bashrc", "w") as f:
        f.write(BASHRC)
    with open("/root/.profile", "w") as f:
        f.write('if [ -f ~/.bashrc ]; then . ~/.bashrc; fi\n')


class Session:
    def __init__(self):
        pid, fd = pty.fork()
        if pid == 0:
            # Python ignores SIGPIPE and SIGXFSZ; a shell that docker exec starts has them at their
            # defaults (without this, `ls | head -1` prints "write error: Broken pipe").
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            os.chdir("/")
            os.execvpe("bash", ["bash", "--login"], os.environ)
        self.pid, self.fd = pid, fd
        # The first prompt: the shell has read its startup files. The init scripts run after this
        # (as after docker exec's shell started), and one that rewrites ~/.bashrc (samples 11, 28)
        # must find them read however loaded the machine: the wait is for the prompt, up to 20 s
        # of silence (the caller gives the answer 30 s).
        self._read_until_prompt(20.0)

    def _read_until_prompt(self, timeout, limit=None):
        out = bytearray()
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            wait = timeout if deadline is None else min(timeout, deadline - time.monotonic())
            if wait <= 0:
                return bytes(out), True
            r, _, _ = select.select([self.fd], [], [], wait)
            if not r:
                return bytes(out), True
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return bytes(out), False
            if not chunk:
                return bytes(out), False
            keep = max(0, MAX_OUTPUT - len(out))
            out += chunk[:keep]
            if PROMPT.search(chunk):
                return bytes(out), False

    def send(self, text, timeout, limit=None):
        os.write(self.fd, text.encode("utf-8") + b"\n")
        out, timed_out = self._read_until_prompt(timeout, limit)
        # The terminal echoes the typed line first; the reference drops that first frame.
        nl = out.find(b"\n")
        out = out[nl + 1:] if nl >= 0 else b""
        return out.decode("utf-8", errors="replace"), timed_out


def read_bounded(stream, deadline):
    """Reads a pipe to its end or the deadline; keeps MAX_OUTPUT bytes. True when the deadline came first."""
    out = bytearray()
    fd = stream.fileno()
    while True:
        wait = deadline - time.monotonic()
        if wait <= 0:
            return bytes(out), True
        r, _, _ = select.select([fd], [], [], wait)
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return bytes(out), False
        out += chunk[:max(0, MAX_OUTPUT - len(out))]


def run_exec(req):
    script, params = req["script"], [str(p) for p in req.get("params", [])]
    if req["language"] == "bash":
        args = ["bash", "-c", script] + (["--"] + params if params else [])
    elif req["language"] == "python":
        args = ["python3", "-c", script] + params
    else:
        return {"exit_code": 127, "output": "unsupported language " + req["language"]}
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd="/")
    out, timed_out = read_bounded(p.stdout, time.monotonic() + req.get("timeout", 60))
    if timed_out:
        p.kill()
    p.stdout.close()
    code = p.wait()
    return {"exit_code": -1 if timed_out else code, "output": out.decode("utf-8", errors="replace")}


CAP_SYS_ADMIN = 21
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_CLEAR_ALL = 4
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def die(what):
    sys.stderr.write("os_session: %s: %s\n" % (what, os.strerror(ctypes.get_errno())))
    sys.exit(125)


def hide_and_drop_admin(libc):
    # An empty read-only tmpfs over /proc/PID: the agent's `find /` and `ps` meet nothing of ours.
    target = ("/proc/%d" % os.getpid()).encode()
    if libc.mount(b"none", target, b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k,mode=0555") != 0:
        die("mount over " + target.decode())
    # CAP_SYS_ADMIN out of the bounding set (no exec can regain it), then out of the ambient,
    # inheritable, permitted and effective sets; anything left is a refusal to run.
    if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0:
        die("drop CAP_SYS_ADMIN from the bounding set")
    if libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0:
        die("clear the ambient capabilities")
    header = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        die("capget")
    bit = ~(1 << CAP_SYS_ADMIN) & 0xFFFFFFFF
    for field in ("effective", "permitted", "inheritable"):
        setattr(data[0], field, getattr(data[0], field) & bit)
    if libc.capset(ctypes.byref(header), data) != 0:
        die("capset")
    check = (CapData * 2)()
    if libc.capget(ctypes.byref(header), check) != 0:
        die("capget")
    if libc.prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) != 0 or \
            libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_SYS_ADMIN, 0, 0) != 0 or \
            any(getattr(check[0], f) & (1 << CAP_SYS_ADMIN) for f in ("effective", "permitted", "inheritable")):
        sys.stderr.write("os_session: CAP_SYS_ADMIN is still held after dropping it\n")
        sys.exit(125)


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    hide_and_drop_admin(libc)
    prepare_root()
    session = None
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "exec":
            res = run_exec(req)
        elif op == "session":
            session = Session()
            res = {"ok": True}
        elif op == "send":
            output, timed_out = session.send(req["text"], req.get("timeout", 5.0), req.get("limit"))
            res = {"output": output, "timed_out": timed_out}
        else:
            res = {"error": "unknown op " + op}
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()


main()
