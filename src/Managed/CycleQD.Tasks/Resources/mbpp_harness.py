# MBPP+ harness (data README section 3). Runs inside the sandbox.
#   groundtruth: runs prompt + canonical_solution on every input, records outputs and run times.
#   sanitize:    the reference's sanitiser on a piece of code (nothing is executed).
# Input: one JSON object on stdin. Output: one JSON line on stdout, prefixed with RESULT_MARK.
# Judging a completion is split in two sandboxes: mbpp_runner.py runs the code under test and
# writes only its outputs; mbpp_judge.py, which the code under test cannot reach, compares them.
# Both import the shared parts of this file.
import ast
import base64
import contextlib
import io
import json
import math
import os
import pickle
import re
import signal
import sys
import time

RESULT_MARK = "@@cycleqd-mbpp-result@@"


def result_json(res):
    # "@" is escaped so that the mark never occurs inside the result (whose strings may quote the
    # code under test): the last mark on stdout is always the one written here.
    return json.dumps(res).replace("@", "\\u0040")

NOT_NONE_TASKS = {"check_str", "text_match_three", "text_starta_endb"}


# ---------------------------------------------------------------- inputs (README: EvalPlus quirks)
def _tuples_deep(x):
    if isinstance(x, list):
        return tuple(_tuples_deep(e) for e in x)
    return x


def deserialize(task_id, inputs):
    n = int(task_id.split("/")[1])
    if n in (2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630, 726, 740, 744, 809):
        return [[tuple(arg) for arg in inp] for inp in inputs]
    if n in (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780):
        return [[[tuple(x) for x in arg] for arg in inp] for inp in inputs]
    if n in (75, 413, 444, 753):
        return [[[tuple(x) for x in inp[0]]] + inp[1:] for inp in inputs]
    if n in (106, 750):
        return [[inp[0], tuple(inp[1])] + inp[2:] for inp in inputs]
    if n in (250, 405, 446, 617, 720, 763, 808):
        return [[tuple(inp[0])] + inp[1:] for inp in inputs]
    if n in (259, 401, 445, 278):
        return [[tuple(tuple(x) if isinstance(x, list) else x for x in arg) for arg in inp] for inp in inputs]
    if n == 307:
        return [[tuple(inp[0]), inp[1], inp[2]] for inp in inputs]
    if n == 722:
        return [[{k: tuple(v) for k, v in inp[0].items()}] + inp[1:] for inp in inputs]
    if n == 124:
        return [[float(inp[0]), complex(inp[1])] for inp in inputs]
    if n == 252:
        return [[complex(inp[0])] for inp in inputs]
    if n == 115:
        # As EvalPlus: a non-empty list becomes a set, every other member (an empty list, a dict,
        # None) becomes {} (an empty dict), and only the first argument is kept.
        return [[[set(x) if isinstance(x, list) and len(x) else {} for x in inp[0]]] for inp in inputs]
    if n in (580, 615, 791):
        return [[_tuples_deep(arg) for arg in inp] for inp in inputs]
    return inputs


# ---------------------------------------------------------------- sanitizer (README steps 1-6)
def _parses(code):
    try:
        ast.parse(code)
        return True
    except (SyntaxError, MemoryError, ValueError):
        return False


def sanitize(raw, entry_point):
    code = "\n" + raw
    head = "def " + entry_point
    # 1. chat fences: keep the first fenced chunk that defines the entry point.
    code = code.replace("\n```python\n", "\n```\n")
    for chunk in code.split("\n```\n"):
        if head in chunk:
            code = chunk
            break
    # 2. keep the entry-point definitions whose body has a 4-space return.
    pieces = re.split(head + r"\s*\(", code)
    bodies = [p for p in pieces[1:] if "    return " in p.split("\ndef")[0]]
    head_paren = head + "("
    code = head_paren + head_paren.join(bodies) if bodies else ""
    # 3. three-space indents get a fourth space.
    out = ""
    for line in code.splitlines():
        if len(line) - len(line.lstrip()) == 3:
            out += " "
        out += line + "\n"
    code = out
    # 4. from the def on, drop unindented lines (except def/import/from); cut at """, if, print.
    lines = code.splitlines()
    cut = set()
    protecting = False
    for i, line in enumerate(lines):
        if not protecting and line.startswith(head_paren):
            protecting = True
            continue
        if line.strip() == "":
            continue
        if line.startswith(("def ", "import ", "from ")):
            continue
        if len(line) - len(line.lstrip()) == 0:
            cut.add(i)
        if line.rstrip().startswith(('"""', "if", "print")):
            cut.update(range(i, len(lines)))
            break
    code = "\n".join(l for i, l in enumerate(lines) if i not in cut)
    # 5. put back what preceded the first definition.
    code = pieces[0] + code
    # 6. drop other functions that do not parse on their own.
    parts = code.split("\ndef ")
    kept = [parts[0]]
    for fn in parts[1:]:
        s = fn.strip()
        if s.startswith(entry_point + " ") or s.startswith(entry_point + "(") or _parses("\ndef " + fn):
            kept.append(fn)
    return "\ndef ".join(kept).strip()


# ---------------------------------------------------------------- comparison
def is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)):
        return all(isinstance(i, float) for i in x)
    return False


def _array(x):
    if isinstance(x, (list, tuple)):
        items = [_array(e) for e in x]
        shapes = {s for s, _ in items}
        if len(shapes) > 1:
            raise TypeError("ragged")
        inner = shapes.pop() if shapes else ()
        return (len(items),) + inner, [v for _, vals in items for v in vals]
    if isinstance(x, (bool, int, float, complex)):
        return (), [x]
    raise TypeError("not numeric: %s" % type(x).__name__)


def assert_allclose(actual, desired, atol, rtol=1e-7):
    # numpy.testing.assert_allclose: same shape (or a scalar side), |a-d| <= atol + rtol*|d|, NaNs equal.
    sa, va = _array(actual)
    sd, vd = _array(desired)
    if sa != sd:
        if sa == ():
            va = va * len(vd)
        elif sd == ():
            vd = vd * len(va)
        else:
            raise AssertionError("shape mismatch")
    for a, d in zip(va, vd):
        a = complex(a) if isinstance(a, complex) else float(a)
        d = complex(d) if isinstance(d, complex) else float(d)
        if isinstance(a, float) and isinstance(d, float):
            if math.isnan(a) and math.isnan(d):
                continue
            if math.isinf(a) or math.isinf(d):
                if a != d:
                    raise AssertionError("inf mismatch")
                continue
        if not abs(a - d) <= atol + rtol * abs(d):
            raise AssertionError("not close")


# ---------------------------------------------------------------- sandbox-within-sandbox guard
class _Timeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds):
    def handler(signum, frame):
        raise _Timeout()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.signal(signal.SIGALRM, handler)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


class _NoInput(io.StringIO):
    def read(self, *a, **k):
        raise IOError

    def readline(self, *a, **k):
        raise IOError

    def readlines(self, *a, **k):
        raise IOError

    def readable(self, *a, **k):
        return False


@contextlib.contextmanager
def swallow_io():
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        old = sys.stdin
        sys.stdin = _NoInput()
        try:
            yield
        finally:
            sys.stdin = old


def guard():
    # As the reference's reliability guard: the code under test cannot kill, delete, spawn or move.
    import builtins
    import shutil
    import subprocess
    os.environ["OMP_NUM_THREADS"] = "1"
    builtins.exit = None
    builtins.quit = None
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
                 "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
                 "chroot", "lchown", "getcwd", "chdir"):
        if hasattr(os, name):
            setattr(os, name, None)
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None
    for mod in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[mod] = None


# ---------------------------------------------------------------- expected outputs
def groundtruth(req):
    code = req["code"]
    entry_point = req["entry_point"]
    globs = {}
    exec(code, globs)
    fn = globs[entry_point]
    result = {}
    for kind in ("base", "plus"):
        outs, times = [], []
        for inp in deserialize(req["task_id"], req[kind + "_input"]):
            start = time.time()
            out = fn(*inp)
            times.append(time.time() - start)
            outs.append(out is not None if entry_point in NOT_NONE_TASKS else out)
        result[kind] = outs
        result[kind + "_time"] = times
    # Some expected outputs pickle to about 1 GB (Mbpp/255): the pickle goes to a file.
    with open(req["pickle_path"], "wb") as f:
        pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {"base_time": result["base_time"], "plus_time": result["plus_time"]}


def main():
    req = json.loads(sys.stdin.read())
    if "task_line" in req:
        task = json.loads(req["task_line"])
        req["base_input"] = task["base_input"]
        req["plus_input"] = task["plus_input"]
    mode = req["mode"]
    result_fd = 1
    if mode == "groundtruth":
        # The canonical code's own prints never reach the host (they could be of any size).
        result_fd = os.dup(1)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        res = groundtruth(req)
    elif mode == "sanitize":
        res = {"solution": sanitize(req["code"], req["entry_point"])}
    else:
        raise SystemExit("unknown mode " + mode)
    sys.stdout.flush()
    data = ("\n" + RESULT_MARK + result_json(res) + "\n").encode()
    while data:
        data = data[os.write(result_fd, data):]


if __name__ == "__main__":
    main()
