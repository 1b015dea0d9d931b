"""Benchmark: PlanningTagger throughput vs a sliding-window exact-token-id matcher.

Goal (issue 2): >= 10 M tokens/s on one core for a 64x1024 batch with 500
strategic grams, >= 50x the baseline run in this same script, and every
word-boundary match the baseline finds is also found by the tagger.

The baseline is the plain approach: encode each gram (with and without a
leading space, lower and capitalised) to token ids, then slide a window over
every row in Python and look each window up in a set.

    python bench/bench_tagger.py            # prints figures, last line JSON
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections import Counter

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from hicra.data import load_benchmark  # noqa: E402
from hicra.method.tagger import PlanningTagger  # noqa: E402
from hicra.models import load_tokenizer  # noqa: E402
from hicra.store.sgfile import read_sg_file  # noqa: E402

torch.set_num_threads(1)
B, T, N_GRAMS = 64, 1024, 500


def build_grams(seed_grams, texts):
    """Seed SGs plus the most frequent 2-4-word n-grams of real text, to 500."""
    counts = Counter()
    for t in texts:
        w = re.findall(r"[a-z']+", t.lower())
        for n in (2, 3, 4):
            counts.update(" ".join(w[i : i + n]) for i in range(len(w) - n + 1))
    grams = list(dict.fromkeys(seed_grams))
    for g, _ in counts.most_common():
        if len(grams) >= N_GRAMS:
            break
        if g not in grams:
            grams.append(g)
    return grams


def build_batch(tok, seed_grams, texts, rng):
    rows = []
    for _ in range(B):
        ids: list[int] = []
        while len(ids) < T:
            g = rng.choice(seed_grams)
            g = rng.choice([g, g.capitalize(), g.upper()])
            chunk = f"{g}, {rng.choice(texts)}\n"
            ids += tok(chunk, add_special_tokens=False)["input_ids"]
        rows.append(ids[:T])
    return torch.tensor(rows)


def baseline_matcher(ids: np.ndarray, gram_ids: dict[int, set]) -> np.ndarray:
    mask = np.zeros(ids.shape, dtype=bool)
    for b, row in enumerate(ids.tolist()):
        for i in range(len(row)):
            for n, table in gram_ids.items():
                if i + n <= len(row) and tuple(row[i : i + n]) in table:
                    mask[b, i : i + n] = True
    return mask


def baseline_word_bounded(ids, gram_ids, tok):
    """Baseline matches whose decoded window sits on word boundaries in its row."""
    out = []
    for b, row in enumerate(ids.tolist()):
        for i in range(len(row)):
            for n, table in gram_ids.items():
                if i + n <= len(row) and tuple(row[i : i + n]) in table:
                    before = tok.decode(row[:i])
                    window = tok.decode(row[i : i + n])
                    after = tok.decode(row[: i + n])[len(before + window) : len(before + window) + 1]
                    w = window.strip()
                    left = (before + window[: len(window) - len(window.lstrip())])[-1:]
                    if w and not (left.isalnum() and w[0].isalnum()) and not (after.isalnum() and w[-1].isalnum()):
                        out.append((b, i, n))
    return out


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    rng = random.Random(0)
    tok = load_tokenizer("smollm2")
    seed = [g["gram"] for g in read_sg_file("data/grams/seed_grams.json")["grams"]]
    texts = [r["solution"] for r in load_benchmark("gsm8k", split="train", limit=2000)]
    grams = build_grams(seed, texts)
    ids = build_batch(tok, seed, texts, rng)
    t0 = time.perf_counter()
    tagger = PlanningTagger(grams, tok)
    build_s = time.perf_counter() - t0

    ours_s = best_of(lambda: tagger.mask(ids), 20)
    gram_ids: dict[int, set] = {}
    for g in grams:
        for v in {g, g.capitalize(), " " + g, " " + g.capitalize()}:
            e = tuple(tok(v, add_special_tokens=False)["input_ids"])
            gram_ids.setdefault(len(e), set()).add(e)
    np_ids = ids.numpy()
    base_s = best_of(lambda: baseline_matcher(np_ids, gram_ids), 1)

    ours = tagger.mask(ids).numpy()
    bounded = baseline_word_bounded(np_ids[:8], gram_ids, tok)
    missed = sum(1 for b, i, n in bounded if not ours[b, i : i + n].all())
    base_mask = baseline_matcher(np_ids, gram_ids)
    res = {
        "batch": f"{B}x{T}",
        "n_grams": len(tagger.grams),
        "tokenizer": "SmolLM2-135M (byte-level BPE)",
        "tagger_build_s": round(build_s, 2),
        "tagger_tokens_per_s": round(B * T / ours_s),
        "baseline_tokens_per_s": round(B * T / base_s),
        "speedup": round(base_s / ours_s, 1),
        "planning_share_tagger": round(float(ours.mean()), 4),
        "planning_share_baseline": round(float(base_mask.mean()), 4),
        "baseline_word_bounded_matches_checked": len(bounded),
        "missed_by_tagger": missed,
    }
    print(f"tagger   : {res['tagger_tokens_per_s'] / 1e6:6.2f} M tokens/s  (goal >= 10)")
    print(f"baseline : {res['baseline_tokens_per_s'] / 1e6:6.3f} M tokens/s")
    print(f"speed-up : {res['speedup']:6.1f}x  (goal >= 50)")
    print(f"recall of baseline word-bounded matches: {len(bounded) - missed}/{len(bounded)}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
