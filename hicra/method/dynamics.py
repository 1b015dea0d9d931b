"""Per-step hierarchy dynamics (paper §2.2-§2.3, Fig 3): what one metrics line holds.

``HICRATrainer`` writes one line per RL step with ``RECORD_KEYS``: the token
statistics come from the log-probs and entropies TRL already computed for the
loss (no second forward pass); the strategic-gram statistics come from the
step's completion texts via ``gram_statistics``: semantic entropy of the SGs
used and conditional entropy of the procedural bigram that follows each SG.

    gram_statistics(tagger, ["Wait, let me check: 3 + 4 = 7."])
"""

from __future__ import annotations

from hicra.method import metrics as M

RECORD_KEYS = (
    "step",
    "reward",
    "accuracy",
    "length",
    "clip_ratio",
    "planning_ratio",
    "entropy_planning",
    "entropy_execution",
    "ppl_planning",
    "ppl_execution",
    "semantic_entropy",
    "conditional_entropy",
    "pass_at_k",
)


def gram_statistics(tagger, texts: list[str], n_follow: int = 2) -> dict[str, float]:
    """Semantic entropy of the SGs in ``texts`` and conditional entropy of what follows them."""
    occ, pairs = [], []
    for t in texts:
        spans = tagger.spans(t)
        occ.append([g for _, _, g in spans])
        pairs += M.following_ngrams(t, spans, n=n_follow)
    return {"semantic_entropy": M.semantic_entropy(occ), "conditional_entropy": M.conditional_entropy(pairs)}
