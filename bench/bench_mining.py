"""Benchmark: mining candidate strategic grams from 100k rollouts (goal: minutes).

Rollouts are sandbox generator traces (~70 words each, re-drawn from the train
tasks with fresh randomness), the same text shape the CLI mines.

    python bench/bench_mining.py [--n 100000]      # prints figures, last line JSON
"""

import argparse
import json
import random
import time

from hicra.grams.mine import mine
from hicra.sandbox.world import WorldConfig, make_tasks, make_trace


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    n = ap.parse_args().n
    wc, rng = WorldConfig(), random.Random(0)
    tasks = make_tasks(wc, "train", 1000)
    t0 = time.perf_counter()
    texts = [make_trace(tasks[i % len(tasks)], rng, wc).text for i in range(n)]
    t_gen = time.perf_counter() - t0
    words = sum(len(t.split()) for t in texts)
    t0 = time.perf_counter()
    cands = mine(texts, progress=False)
    t_mine = time.perf_counter() - t0
    print(
        f"{n} rollouts, {words / 1e6:.2f} M words: mined in {t_mine:.1f} s ({words / t_mine / 1e6:.2f} M words/s), "
        f"{len(cands)} candidates; generating them took {t_gen:.1f} s"
    )
    print(json.dumps({"rollouts": n, "words": words, "mine_s": round(t_mine, 2), "candidates": len(cands)}))


if __name__ == "__main__":
    main()
