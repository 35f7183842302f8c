# MBPP+ runner (data README section 3, "Judging"). Runs the code under test in its own sandbox,
# which holds neither the expected outputs nor any channel to the verdict: it only writes the
# outputs, and mbpp_judge.py compares them in another sandbox. Whatever the code under test writes
# to the stream is at most a claim about its own outputs.
#
# Input: one JSON object on stdin (prompt, completion, sanitize, entry_point, task_id, task_line,
# kinds, time_limits per kind). Output on stdout, a stream of frames, each a JSON header line
# followed by "n" payload bytes:
#   {"t": "out", "k": kind, "i": index, "n": bytes}  pickle of the output of input i
#                                                     (for the not-None oracles: out is not None)
#   {"t": "err", "k": kind, "i": index, "reason": s}  input i raised or exceeded its limit
#   {"t": "end", "k": kind, "status": "exited" | "timed out"}  written after the child is gone
import json
import os
import pickle
import signal
import sys
import time

from mbpp_harness import NOT_NONE_TASKS, _Timeout, deserialize, guard, sanitize, swallow_io, time_limit

# Outputs that need no value: the oracle accepts anything that ran (Mbpp/164).
ANY_OUTPUT_TASKS = {"are_equivalent"}


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def frame(fd, header, payload=b""):
    header = dict(header, n=len(payload))
    write_all(fd, json.dumps(header).encode() + b"\n" + payload)


def run_tests(code, entry_point, kind, inputs, time_limits, out_fd):
    """In a child process: exec the code and call the entry point on each input."""
    # The code's own prints (and anything it writes to fds 1 and 2) go nowhere, as the
    # reference's swallowed stdio; only the dup'd stream carries frames.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    done = 0
    guard()
    globs = {}
    try:
        with swallow_io():
            exec(code, globs)
            fn = globs[entry_point]
            for i, inp in enumerate(inputs):
                with time_limit(time_limits[i]):
                    with swallow_io():
                        out = fn(*inp)
                if entry_point in ANY_OUTPUT_TASKS:
                    payload = b""
                elif entry_point in NOT_NONE_TASKS:
                    payload = pickle.dumps(out is not None)
                else:
                    payload = pickle.dumps(out, protocol=4)
                frame(out_fd, {"t": "out", "k": kind, "i": i}, payload)
                done += 1
    except _Timeout:
        frame(out_fd, {"t": "err", "k": kind, "i": done,
                       "reason": "input %d exceeded its %.3f s limit" % (done, time_limits[done])})
    except BaseException as e:
        frame(out_fd, {"t": "err", "k": kind, "i": done,
                       "reason": "%s on input %d: %s" % (type(e).__name__, done, str(e)[:300])})
    os._exit(0)


def run_kind(code, entry_point, kind, inputs, time_limits, out_fd, total_cap):
    # EvalPlus's whole-run limit is the sum of the per-input limits + 1 s (+ 1 s join); the
    # optional cap bounds it (null: no cap, as EvalPlus).
    total = sum(time_limits)
    timeout = (total if total_cap is None else min(total_cap, total)) + 1
    pid = os.fork()
    if pid == 0:
        try:
            run_tests(code, entry_point, kind, inputs, time_limits, out_fd)
        finally:
            os._exit(0)
    deadline = time.monotonic() + timeout + 1
    finished = False
    while time.monotonic() < deadline:
        wpid, _ = os.waitpid(pid, os.WNOHANG)
        if wpid:
            finished = True
            break
        time.sleep(0.005)
    if not finished:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    frame(out_fd, {"t": "end", "k": kind, "status": "exited" if finished else "timed out", "timeout": timeout + 1})


def main():
    req = json.loads(sys.stdin.read())
    task = json.loads(req["task_line"])
    entry_point = req["entry_point"]
    raw = (req["prompt"] + "\n" + req["completion"]).strip()
    code = sanitize(raw, entry_point).strip() if req.get("sanitize", True) else raw
    out_fd = os.dup(1)
    for kind in req["kinds"]:
        inputs = deserialize(req["task_id"], task[kind + "_input"])
        run_kind(code, entry_point, kind, inputs, req["time_limits"][kind], out_fd, req.get("total_time_cap"))


if __name__ == "__main__":
    main()
