"""Per-step hierarchy dynamics (paper §2.2-§2.3, Fig 3): one record per RL step.

The trainer hands over what it already has — completion ids and mask, the
per-token log-probs and entropies TRL computed for the loss, rewards — and
this module turns them into the metrics the paper plots: planning ratio,
entropy and perplexity of planning vs execution tokens, semantic entropy of
the strategic grams used, conditional entropy of the procedural bigram that
follows a gram, and pass@k over each prompt's group. No second forward pass.

    rec = step_record(tagger, tokenizer, ids, mask, logps, entropies, rewards, group_size=8)
"""
from __future__ import annotations

import numpy as np
import torch

from hicra import metrics as M

RECORD_KEYS = ("step", "reward", "accuracy", "length", "clip_ratio", "planning_ratio", "entropy_planning",
               "entropy_execution", "ppl_planning", "ppl_execution", "semantic_entropy", "conditional_entropy",
               "pass_at_k")


def gram_statistics(tagger, texts: list[str], n_follow: int = 2) -> dict[str, float]:
    """Semantic entropy of the SGs in ``texts`` and conditional entropy of what follows them."""
    occ, pairs = [], []
    for t in texts:
        spans = tagger.spans(t)
        occ.append([g for _, _, g in spans])
        pairs += M.following_ngrams(t, spans, n=n_follow)
    return {"semantic_entropy": M.semantic_entropy(occ), "conditional_entropy": M.conditional_entropy(pairs)}


def step_record(tagger, tokenizer, completion_ids, completion_mask, logps, entropies, rewards, group_size: int,
                planning_mask=None, k: int = 8, max_completion_length: int | None = None) -> dict[str, float]:
    """Dynamics of one batch of rollouts (rewards in [0, 1]; a reward of 1 counts as correct)."""
    cm = torch.as_tensor(completion_mask).bool()
    plan = tagger.mask(completion_ids, cm) if planning_mask is None else torch.as_tensor(planning_mask).bool()
    rec = M.split_token_stats(logps, entropies, plan, cm)
    texts = tokenizer.batch_decode(torch.as_tensor(completion_ids) * cm, skip_special_tokens=True)
    rec.update(gram_statistics(tagger, texts))
    r = np.asarray(torch.as_tensor(rewards, dtype=torch.float32).cpu())
    lengths = cm.sum(1).float()
    rec["reward"] = float(r.mean())
    rec["accuracy"] = float((r >= 1.0).mean())
    rec["length"] = float(lengths.mean())
    if max_completion_length:
        rec["clip_ratio"] = float((lengths >= max_completion_length).float().mean())
    if len(r) % group_size == 0:
        correct = (r >= 1.0).reshape(-1, group_size).sum(1)
        kk = min(k, group_size)
        rec["pass_at_k"] = float(M.pass_at_k(np.full(len(correct), group_size), correct, kk).mean())
    return rec
