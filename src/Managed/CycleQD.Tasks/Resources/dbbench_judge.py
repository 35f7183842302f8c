# Judges AgentBench DB query answers with Python's own eval/float/set semantics
# (data README section 1, "Query answers"). Reads a JSON list of {"answer": str, "label": [str]}
# from stdin, writes one JSON list of {"correct": bool, "parsed": str} to stdout.
# Runs inside the sandbox: the answers are model output and eval runs them.
import json
import signal
import sys


class _Slow(BaseException):
    pass


def _alarm(signum, frame):
    raise _Slow()


def judge(answer, label):
    try:
        parsed = list(eval(answer))
    except Exception:
        parsed = [answer]
    if len(parsed) == 1 and len(label) == 1:
        try:
            ok = float(parsed[0]) == float(label[0])
        except (ValueError, TypeError):
            ok = parsed[0] == label[0]
    else:
        try:
            ok = set(parsed) == set(label)
        except TypeError:
            ok = False
    return bool(ok), repr(parsed)


def main():
    items = json.load(sys.stdin)
    out = []
    for item in items:
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, 2.0)
        try:
            ok, parsed = judge(item["answer"], item["label"])
        except BaseException as e:  # an answer whose eval misbehaves fails alone
            ok, parsed = False, "error: %s" % type(e).__name__
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        out.append({"correct": ok, "parsed": parsed[:2000]})
    sys.stdout.write(json.dumps(out))


main()
