"""Benchmark: hierarchy metrics over 1 M rollout tokens (goal: <= 10 s).

Synthetic but shaped like a training step's tensors: 1,000 rollouts x 1,000
tokens of log-probs, entropies, a planning mask (~15 %) and padding, plus the
strategic grams those rollouts contain.

    python bench/bench_metrics.py          # prints figures, last line JSON
"""

import json
import time

import numpy as np
import torch

from hicra.method import metrics as M

B, T = 1250, 1000


def main():
    g = torch.Generator().manual_seed(0)
    logps = -torch.rand(B, T, generator=g) * 3
    ent = torch.rand(B, T, generator=g) * 4
    plan = torch.rand(B, T, generator=g) < 0.15
    lengths = torch.randint(3 * T // 5, T + 1, (B,), generator=g)
    cm = torch.arange(T)[None] < lengths[:, None]
    rng = np.random.default_rng(0)
    grams = [f"gram {i}" for i in range(300)]
    occ = [[grams[j] for j in rng.zipf(1.5, size=20) % 300] for _ in range(B)]
    pairs = [(o, f"next {k % 50}") for row in occ for k, o in enumerate(row)]
    t0 = time.perf_counter()
    s = M.split_token_stats(logps, ent, plan, cm)
    t1 = time.perf_counter()
    f = M.fork_overlap(ent, plan, cm, rho=0.2)
    t2 = time.perf_counter()
    se, ce = M.semantic_entropy(occ), M.conditional_entropy(pairs)
    t3 = time.perf_counter()
    pk = M.pass_at_k(np.full(B, 16), rng.integers(0, 17, B), 8).mean()
    t4 = time.perf_counter()
    from hicra.method.dynamics import gram_statistics
    from hicra.method.tagger import PlanningTagger
    from hicra.store.sgfile import read_sg_file

    tagger = PlanningTagger([g["gram"] for g in read_sg_file("data/grams/seed_grams.json")["grams"]])
    words = ["so", "we", "need", "to", "wait,", "let's", "try", "3", "+", "4", "=", "7.", "check:", "the", "answer"]
    texts = [" ".join(rng.choice(words, size=800)) for _ in range(B)]  # ~800 words per rollout
    t5 = time.perf_counter()
    gs = gram_statistics(tagger, texts)
    t6 = time.perf_counter()
    res = {
        "tokens": int(cm.sum()),
        "split_token_stats_s": round(t1 - t0, 3),
        "fork_overlap_s": round(t2 - t1, 3),
        "entropies_s": round(t3 - t2, 3),
        "pass_at_k_s": round(t4 - t3, 3),
        "gram_statistics_from_text_s": round(t6 - t5, 3),
        "total_s": round(t4 - t0 + t6 - t5, 3),
        "check": {
            "ppl_planning": round(s["ppl_planning"], 3),
            "fork_is_planning": round(f["fork_is_planning"], 3),
            "semantic_entropy": round(se, 3),
            "conditional_entropy": round(ce, 3),
            "pass@8": round(pk, 3),
            "semantic_entropy_text": round(gs["semantic_entropy"], 3),
        },
    }
    print(f"metrics over {res['tokens'] / 1e6:.2f} M tokens: {res['total_s']:.2f} s (goal <= 10 s)")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
