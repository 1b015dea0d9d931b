"""Measured quality of an SG set: token-level precision and recall on the sandbox (paper §2.1).

The sandbox writes every strategic phrase with its character span, so the
planning tokens are known. An SG set is scored by tagging held-out generator
traces (validation tasks, a seed the miner never saw) with ``PlanningTagger``
and comparing its token mask with the tokens that overlap a ground-truth span:

    precision = |tagged ∩ truth| / |tagged|,   recall = |tagged ∩ truth| / |truth|

    from hicra.grams.quality import sandbox_quality
    sandbox_quality(["let's try", "wait,"], tokenizer)   # {"precision": .., "recall": .., "n_tokens": ..}
"""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import torch

from hicra.grams.mine import Candidate, normalize
from hicra.method.tagger import PlanningTagger
from hicra.sandbox.world import WorldConfig, make_tasks, make_trace
from hicra.store.paths import resolve


def truth_traces(n: int = 300, seed: int = 12345, world=None):
    """Held-out generator traces (validation tasks) with their ground-truth spans."""

    wc = world or WorldConfig()
    rng = random.Random(seed)
    return [make_trace(t, rng, wc) for t in make_tasks(wc, "val", n, allow_fewer=True)]


def token_masks(traces, tokenizer, grams) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true) planning masks over all tokens of the traces, concatenated."""

    tagger = PlanningTagger(grams, tokenizer) if grams else None
    pred, true = [], []
    for tr in traces:
        enc = tokenizer(tr.text, add_special_tokens=False, return_offsets_mapping=True)
        true.append(np.array([any(s < ge and gs < e for gs, ge, _, _ in tr.spans) for s, e in enc["offset_mapping"]]))
        pred.append(
            tagger.mask(torch.tensor([enc["input_ids"]]))[0].numpy()
            if tagger
            else np.zeros(len(enc["input_ids"]), bool)
        )
    return np.concatenate(pred), np.concatenate(true)


def precision_recall(pred: np.ndarray, true: np.ndarray) -> dict:
    tp = int((pred & true).sum())
    return {
        "precision": tp / max(1, int(pred.sum())),
        "recall": tp / max(1, int(true.sum())),
        "n_tokens": int(len(true)),
        "n_planning_true": int(true.sum()),
        "n_planning_tagged": int(pred.sum()),
    }


def sandbox_quality(grams, tokenizer, n: int = 300, seed: int = 12345) -> dict:
    """Token-level precision / recall of ``grams`` against the sandbox ground truth."""
    return precision_recall(*token_masks(truth_traces(n, seed), tokenizer, list(grams)))


# --------------------------------------------------------------------------
# real text: the labelled dev set of phrases from the shipped human solutions

REAL_DEV = "data/grams/real_dev.jsonl"


def real_dev_quality(annotator, path: str = REAL_DEV, seeds=(), n: int = 0, seed: int = 0) -> dict:
    """Phrase-level precision / recall of an annotator on ``data/grams/real_dev.jsonl`` (real solution text,
    labelled by the rule in data/grams/README.md), overall and on the phrases that are not seed grams
    (``seeds``: the annotator's own list; a seed is trivially recognised), plus kind agreement on hits.
    ``n`` > 0 scores a seeded sample of n phrases, stratified by label (for endpoints too slow for all 247)."""

    rows = [json.loads(x) for x in open(resolve(path))]
    if 0 < n < len(rows):
        rng = random.Random(seed)
        pos = [r for r in rows if r["label"] == "strategic"]
        k = round(n * len(pos) / len(rows))
        pick = {id(r) for r in rng.sample(pos, k) + rng.sample([r for r in rows if r["label"] != "strategic"], n - k)}
        rows = [r for r in rows if id(r) in pick]  # file order kept
    js = annotator.annotate([Candidate(r["phrase"], len(r["phrase"].split()), r["docs"]) for r in rows])
    seed_set = {normalize(s) for s in seeds}

    def score(keep):
        sel = [(r, j) for r, j in zip(rows, js) if keep(r)]
        tp = sum(j.strategic and r["label"] == "strategic" for r, j in sel)
        pred = sum(j.strategic for _, j in sel)
        true = sum(r["label"] == "strategic" for r, _ in sel)
        kinds = sum(j.kind == r["kind"] for r, j in sel if j.strategic and r["label"] == "strategic")
        return {
            "n": len(sel),
            "n_strategic": true,
            "precision": tp / pred if pred else None,
            "recall": tp / true if true else None,
            "kind_agreement": kinds / tp if tp else None,
        }

    out = {"all": score(lambda r: True), "not_seeds": score(lambda r: r["phrase"] not in seed_set)}
    out["false_positives"] = [r["phrase"] for r, j in zip(rows, js) if j.strategic and r["label"] != "strategic"]
    out["missed"] = [r["phrase"] for r, j in zip(rows, js) if not j.strategic and r["label"] == "strategic"]
    out["labels"] = [bool(j.strategic) for j in js]  # per dev phrase, in file order
    out["unparsed"] = sum(j.note == "unparsed" for j in js)  # LLM answers that named no label for the phrase
    return out


def gram_precision(grams: list[str], n: int = 200, seed: int = 12345, world=None) -> pd.DataFrame:
    """Per gram: its occurrences in ``n`` held-out ground-truth traces and the share of them inside a true
    planning span (character level; the sandbox's oracle), most frequent first."""
    tagger = PlanningTagger(grams)
    hits = {g: [0, 0] for g in tagger.grams}
    for tr in truth_traces(n, seed, world):
        for s, e, g in tagger.spans(tr.text):
            hits[g][0] += 1
            hits[g][1] += any(a <= s and e <= b for a, b, *_ in tr.spans)
    rows = [{"gram": g, "occurrences": n, "precision": k / n if n else float("nan")} for g, (n, k) in hits.items()]
    return pd.DataFrame(rows).sort_values("occurrences", ascending=False, ignore_index=True)
