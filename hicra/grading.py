"""Answer equivalence in a worker process with a hard deadline: the grader cannot hang, in any thread.

Why: math-verify's own timeouts use ``signal.alarm``, so they work only in a main thread, and even there a
big-integer power (``9^{9999 \\cdot 9999}``, ``(9^{9999})^{9999}``) holds the interpreter lock inside one C call,
where no signal handler and no thread join can stop it. Patching LaTeX constructs one at a time never ends
(continued fractions, ``\\Gamma(10^{9})``, ``\\binom{10^9}{10^8}``, ...). So the work itself is bounded: math-verify
runs in a child process, which is killed when it has not answered within ``DEADLINE_S`` seconds (the answer is then
incorrect, said once on stderr). Workers are kept in a pool and reused, so a normal answer costs one pipe round
trip (``bench/bench_grader.py``: throughput against the old in-thread call); a worker stops with its parent
(``PR_SET_PDEATHSIG`` on Linux; end of input elsewhere).

    from hicra.grading import verify_bounded
    verify_bounded("\\\\frac{1}{2}", "0.5")     # True, in the worker (math-verify, normalised answers)
    python -m hicra.grading                   # the worker: JSON [pred, gold] lines in, true/false lines out
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from functools import lru_cache

from math_verify import LatexExtractionConfig, parse, verify

DEADLINE_S = 5.0  # seconds an answer may take to grade; past it the worker is killed and the answer is incorrect
START_S = 120.0  # seconds a new worker may take to import math-verify and sympy (a loaded machine)


# --------------------------------------------------------------------------
# the parent side: a pool of workers


class _Worker:
    def __init__(self, proc: subprocess.Popen):
        self.proc, self.buf = proc, b""

    def line(self, timeout: float) -> bytes | None:
        """The worker's next output line, or None when none came within ``timeout`` seconds (or it died)."""

        end, fd = time.monotonic() + timeout, self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        out, self.buf = self.buf.split(b"\n", 1)
        return out

    def ask(self, pred: str, gold: str, timeout: float) -> bool | None:
        try:
            self.proc.stdin.write(json.dumps([pred, gold]).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        out = self.line(timeout)
        return None if out is None else json.loads(out) is True

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            f.close()


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the worker imports this very hicra
_PATH = os.environ.get("PYTHONPATH", "")
_lock = threading.Lock()
_idle: list[_Worker] = []
_owner = {"pid": None, "spawner": None}


# --------------------------------------------------------------------------
# math-verify in this process: the worker's grader (and the old in-thread path the bench compares against)

TIMEOUT_S = 2
_log = logging.getLogger(__name__)
_CFG = [LatexExtractionConfig(boxed_match_priority=0)]


def _timeouts() -> int | None:
    return TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=65536)
def _parse(ans: str):
    return parse(f"${ans}$", extraction_config=_CFG, parsing_timeout=_timeouts(), raise_on_error=False)


def verify_here(p: str, g: str) -> bool:
    """math-verify's equivalence of two normalised answers, in this process and thread (no hard deadline: the
    grading worker's function, and the old in-thread path that ``bench/bench_grader.py`` compares against)."""
    try:
        gp, pp = _parse(g), _parse(p)
        if not gp or not pp:
            return False
        return bool(verify(gp, pp, timeout_seconds=_timeouts(), raise_on_error=False))
    except Exception as e:  # math-verify/sympy on hostile input: incorrect, never a crash
        _log.debug("math-verify failed on %r vs %r: %s", p, g, e)
        return False


def _spawner() -> queue.Queue:
    """One long-lived thread starts every worker: ``PR_SET_PDEATHSIG`` fires when the *thread* that started a
    child ends, so a worker started by a short-lived request thread would die with it."""
    with _lock:
        if _owner["pid"] != os.getpid():  # first use, or a forked child: the parent's workers are not ours
            _idle.clear()
            requests: queue.Queue = queue.Queue()

            def serve():
                while True:
                    reply = requests.get()
                    try:
                        reply.put(_start())
                    except BaseException as e:  # noqa: BLE001  (handed to the caller)
                        reply.put(e)

            threading.Thread(target=serve, daemon=True, name="hicra-grader-spawner").start()
            _owner.update(pid=os.getpid(), spawner=requests)
        return _owner["spawner"]


def _start() -> _Worker:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hicra.grading"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, _PATH]))},
    )
    w = _Worker(proc)
    if w.line(START_S) != b'"ready"':
        w.kill()
        raise RuntimeError(f"the grading worker ({sys.executable} -m hicra.grading) did not start")
    return w


def _take() -> _Worker:
    spawner = _spawner()
    with _lock:
        while _idle:
            w = _idle.pop()
            if w.proc.poll() is None:
                return w
    reply: queue.Queue = queue.Queue()
    spawner.put(reply)
    got = reply.get()
    if isinstance(got, BaseException):
        raise got
    return got


def verify_bounded(pred: str, gold: str, deadline: float | None = None) -> bool:
    """math-verify's equivalence of two (normalised) answers, decided in a worker within ``deadline`` seconds
    (``DEADLINE_S``); an answer that takes longer is incorrect and its worker is replaced."""
    w = _take()
    res = w.ask(pred, gold, DEADLINE_S if deadline is None else deadline)
    if res is None:
        w.kill()
        print(
            f"[hicra] grading {pred[:60]!r} took over {DEADLINE_S:g} s: counted incorrect", file=sys.stderr, flush=True
        )
        return False
    with _lock:
        if _owner["pid"] == os.getpid():
            _idle.append(w)
    return res


def worker_pids() -> list[int]:
    """Process ids of the idle workers (to see that the pool is reused)."""
    with _lock:
        return [w.proc.pid for w in _idle]


# --------------------------------------------------------------------------
# the worker side


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass  # elsewhere: the worker ends at its next read, when its input closes


def serve() -> None:
    """Answer ``[pred, gold]`` lines with ``true``/``false`` lines, in this process's main thread (so
    math-verify's own signal timeouts apply too)."""
    _die_with_parent()

    out = sys.stdout.buffer
    out.write(b'"ready"\n')
    out.flush()
    for line in sys.stdin.buffer:
        try:
            pred, gold = json.loads(line)
            ok = bool(verify_here(pred, gold))
        except Exception:  # noqa: BLE001  (hostile input is incorrect, never a dead worker)
            ok = False
        out.write(b"true\n" if ok else b"false\n")
        out.flush()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m hicra.grading",
        description="The grading worker: JSON [pred, gold] lines in, true/false lines out "
        "(hicra.training.rewards starts it).",
    )
    ap.parse_args(argv)
    serve()


if __name__ == "__main__":
    main()
