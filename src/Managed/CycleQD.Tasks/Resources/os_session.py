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
# which fails the sample.
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
        self._read_until_prompt(2.0)

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


def main():
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
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
