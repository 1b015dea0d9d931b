"""Benchmark: grading throughput of normal answers, worker process with a hard deadline vs the old in-thread call.

Goal (issue 38): the grader bounds its work (``hicra.grading``: math-verify in a pooled worker process killed past
its deadline) and normal answers keep at least half of the old throughput (math-verify called in the caller's
thread, ``hicra.training.rewards.verify_here``), measured here in the same run, as a ratio.

Answers: the shipped MATH-500 gold answers, each compared with an equal answer written differently (``(a)``) and
with the next problem's answer (mostly unequal), so every pair reaches math-verify (no textual shortcut). Both
paths start warm (one comparison) with empty parse caches; the worker is started before the clock (its start is
printed apart).

    python bench/bench_grader.py [N]        # N problems (default 200); prints figures, last line JSON
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from hicra import grading  # noqa: E402
from hicra.data import load_benchmark  # noqa: E402
from hicra.training.rewards import MAX_ANSWER_CHARS, _parse, normalize_answer, too_big, verify_here  # noqa: E402


def pairs(n: int) -> list[tuple[str, str]]:
    golds = [normalize_answer(r["answer"]) for r in load_benchmark("math500", split="test", limit=n + 1)]
    golds = [g for g in golds if g and len(g) < MAX_ANSWER_CHARS - 2 and not too_big(g)]
    return [(f"({a})", a) for a in golds[:-1]] + list(zip(golds[:-1], golds[1:]))


def timed(fn, work):
    t = time.perf_counter()
    out = [fn(p, g) for p, g in work]
    return time.perf_counter() - t, out


def main(n: int = 200) -> dict:
    work = pairs(n)
    verify_here("1", "2")  # warm sympy's lazy imports in this process too, as the worker's are warmed below
    _parse.cache_clear()
    old_s, old = timed(verify_here, work)
    t = time.perf_counter()
    grading.verify_bounded("1", "2")  # start the worker (and warm its imports) before the clock
    start_s = time.perf_counter() - t
    new_s, new = timed(grading.verify_bounded, work)
    res = {
        "pairs": len(work),
        "old_in_thread_per_s": round(len(work) / old_s, 1),
        "worker_per_s": round(len(work) / new_s, 1),
        "worker_time_over_in_thread": round(new_s / old_s, 3),
        "worker_start_s": round(start_s, 2),
        "same_verdicts": old == new,
        "equal_pairs_found": sum(new),
    }
    print(
        f"{len(work)} pairs: in-thread {res['old_in_thread_per_s']}/s, worker {res['worker_per_s']}/s, "
        f"worker time / in-thread time = {res['worker_time_over_in_thread']} (goal <= 2); "
        f"worker start {start_s:.2f} s; same verdicts: {res['same_verdicts']}"
    )
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
