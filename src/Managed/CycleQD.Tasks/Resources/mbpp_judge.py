# MBPP+ judge (data README section 3, "Judging"). Runs in a sandbox of its own after the runner's
# sandbox is gone, so the code under test never shares a process, a pid namespace or a channel
# with it. Reads the expected outputs (/expected/expected.pkl, computed from the canonical
# solution) and the runner's frame stream (/outputs/stream, see mbpp_runner.py), compares them
# input by input as the reference does (fast check: the first failing input decides) and writes
# one JSON line on stdout, prefixed with RESULT_MARK.
#
# The stream is untrusted: frames are parsed with bounds, and outputs are unpickled with a loader
# that builds only plain data (no class or function can be named but the few containers below),
# so nothing in it can run code here.
import io
import json
import mmap
import os
import pickle
import sys

from mbpp_harness import NOT_NONE_TASKS, RESULT_MARK, assert_allclose, is_floats, result_json, sanitize

MAX_HEADER = 1 << 16
# The only globals an output may name: builtin value types and the collections that canonical
# solutions return; pickle opcodes cover list, tuple, dict, set, frozenset, str, bytes, int, float.
SAFE_GLOBALS = {
    ("builtins", "complex"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
    ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "int"), ("builtins", "str"),
    ("builtins", "float"), ("builtins", "bool"),
    ("collections", "OrderedDict"), ("collections", "Counter"), ("collections", "defaultdict"), ("collections", "deque"),
}


class PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError("an output of type %s.%s cannot be judged" % (module, name))

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def plain_loads(data):
    return PlainUnpickler(io.BytesIO(data)).load()


class Stream:
    """The runner's frames, by kind and index; parsing stops at the first malformed frame."""

    def __init__(self, data):
        self.data = data
        self.outputs = {}
        self.ends = {}
        self.malformed = None
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos, pos + MAX_HEADER)
            try:
                if nl < 0:
                    raise ValueError("a frame header has no end")
                header = json.loads(data[pos:nl])
                n = header["n"]
                if not isinstance(n, int) or n < 0 or nl + 1 + n > len(data):
                    raise ValueError("a frame's length is out of range")
                kind = str(header["k"])
                if header["t"] == "end":
                    self.ends.setdefault(kind, str(header.get("status", "")))
                elif header["t"] in ("out", "err"):
                    entries = self.outputs.setdefault(kind, [])
                    if header["i"] != len(entries) or (entries and entries[-1][0] == "err"):
                        raise ValueError("frames out of order")
                    # Payloads stay in the mapped file until they are compared (Mbpp/255's outputs are about 1 GB).
                    entries.append(("err", str(header.get("reason", ""))[:300]) if header["t"] == "err" else ("out", (nl + 1, nl + 1 + n)))
                else:
                    raise ValueError("unknown frame type")
            except (ValueError, KeyError, TypeError, RecursionError) as e:
                self.malformed = "the output stream is malformed at byte %d (%s)" % (pos, e)
                break
            pos = nl + 1 + n


def judge_kind(entry_point, atol, expected, data, entries, end_status, runner_timed_out, malformed, note):
    passed = 0
    try:
        for i, exp in enumerate(expected):
            if i >= len(entries):
                if note or malformed:
                    return {"status": "failed", "passed": passed, "reason": note or malformed}
                if end_status == "timed out" or (end_status is None and runner_timed_out):
                    return {"status": "timed out", "passed": passed,
                            "reason": "the run was stopped at its time limit before input %d" % i}
                return {"status": "failed", "passed": passed, "reason": "the test process ended before input %d" % i}
            what, value = entries[i]
            if what == "err":
                return {"status": "failed", "passed": passed, "reason": value}
            if entry_point == "are_equivalent":
                exact = True
            else:
                out = plain_loads(data[value[0]:value[1]])
                exact = out == exp
                if entry_point == "sum_div":
                    exact = exact or out == 0
                elif entry_point in NOT_NONE_TASKS:
                    exact = exp == (out is True)
            if atol == 0 and is_floats(exp):
                atol = 1e-6
            if not exact and atol != 0:
                assert_allclose(out, exp, atol)
            else:
                assert exact
            passed += 1
    except BaseException as e:
        return {"status": "failed", "passed": passed,
                "reason": "%s on input %d: %s" % (type(e).__name__, passed, str(e)[:300])}
    return {"status": "success", "passed": passed, "reason": ""}


def main():
    req = json.loads(sys.stdin.read())
    entry_point = req["entry_point"]
    raw = (req["prompt"] + "\n" + req["completion"]).strip()
    out = {"solution": sanitize(raw, entry_point).strip() if req.get("sanitize", True) else raw}
    with open(req["pickle_path"], "rb") as f:
        expected = pickle.load(f)
    with open(req["stream_path"], "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    stream = Stream(data)
    for kind in req["kinds"]:
        out[kind] = judge_kind(entry_point, req["atol"], expected[kind], data, stream.outputs.get(kind, []),
                               stream.ends.get(kind), req["runner_timed_out"], stream.malformed, req.get("stream_note"))
    sys.stdout.write("\n" + RESULT_MARK + result_json(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
