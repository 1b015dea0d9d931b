"""Hierarchy metrics of paper §2.2-§2.3 and Fig 3/9, plus pass@k and intervals.

Pure functions over arrays/tensors (no I/O, no TRL), vectorised so 1 M rollout
tokens take well under 10 s (``python bench/bench_metrics.py``). Definitions:

* semantic entropy: Shannon entropy (bits) of the strategic-gram frequency
  distribution pooled over a set of rollouts, ``H = -sum_g p_g log2 p_g`` with
  ``p_g = count_g / sum counts``. Rising = more diverse strategies (§2.3).
* conditional entropy: ``H(Y | X)`` in bits, X a strategic gram and Y the
  procedural n-gram that follows it; low = each plan fixes its execution.
* token entropy / perplexity split: mean entropy and ``exp(-mean log p)`` over
  planning vs execution tokens (§2.2); padding excluded.
* relative perplexity: a perplexity series divided by its first value.
* fork-token overlap (Fig 9): the top-rho tokens by entropy are "forks";
  reported as share of planning tokens that are forks and share of forks that
  are planning.
* pass@k: the unbiased estimator ``1 - C(n-c, k) / C(n, k)``; avg@k: mean
  accuracy over k samples per problem, then over problems.

    from hicra.method.metrics import semantic_entropy
    semantic_entropy([["wait", "let's try"], ["wait"]])   # 0.918 bits
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from hicra.method.stats import relative  # noqa: F401  (re-exported: it lives with the other numpy statistics)

# --------------------------------------------------------------------------
# strategic-gram distributions


def _entropy_bits(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=np.float64)
    if (counts < 0).any() or not np.isfinite(counts).all():
        raise ValueError(f"counts must be finite and >= 0; got {counts[(counts < 0) | ~np.isfinite(counts)][:3]}")
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def semantic_entropy(occurrences: Iterable[Sequence[str]] | Counter) -> float:
    """Entropy (bits) of the SG frequency distribution over rollouts; 0 when no SG occurs.

    ``occurrences``: per rollout, the grams that occur (one entry per occurrence),
    e.g. ``PlanningTagger.occurrences(ids)``, or a ready ``Counter``.
    """
    counts = occurrences if isinstance(occurrences, Counter) else Counter(g for row in occurrences for g in row)
    return _entropy_bits(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))


def following_ngrams(text: str, spans: Sequence[tuple[int, int, str]], n: int = 2) -> list[tuple[str, str]]:
    """(gram, next n words) for each SG span of ``text``; the words are lower-cased."""
    out = []
    for _, end, gram in spans:
        words = text[end : end + 200].lower().split()
        if len(words) >= n:
            out.append((gram, " ".join(words[:n])))
    return out


def conditional_entropy(pairs: Iterable[tuple[str, str]]) -> float:
    """``H(Y | X)`` in bits from (x, y) pairs: ``sum_x p(x) H(Y | X = x)``; 0 for no pairs."""
    joint = Counter(pairs)
    if not joint:
        return 0.0
    by_x: dict[str, list[int]] = {}
    for (x, _), c in joint.items():
        by_x.setdefault(x, []).append(c)
    total = sum(joint.values())
    return float(sum(sum(cs) / total * _entropy_bits(np.array(cs)) for cs in by_x.values()))


# --------------------------------------------------------------------------
# token-level statistics


def split_token_stats(logps, entropies, planning_mask, completion_mask=None) -> dict[str, float]:
    """Mean entropy and perplexity over planning vs execution tokens.

    Args:
        logps: (B, T) log-probability of each sampled token.
        entropies: (B, T) entropy of the policy at each position (nats), or None.
        planning_mask: (B, T) bool.
        completion_mask: (B, T) bool/int, False on padding.
    Returns ``entropy_planning``, ``entropy_execution``, ``ppl_planning``,
    ``ppl_execution``, ``planning_ratio``; NaN for a class with no tokens.
    """
    logps = torch.as_tensor(logps, dtype=torch.float64)
    plan = torch.as_tensor(planning_mask).bool()
    valid = torch.ones_like(plan) if completion_mask is None else torch.as_tensor(completion_mask).bool()
    out = {}
    for name, sel in (("planning", plan & valid), ("execution", ~plan & valid)):
        n = sel.sum()
        mean_lp = (logps * sel).sum() / n if n else torch.tensor(float("nan"))
        out[f"ppl_{name}"] = float(torch.exp(-mean_lp))
        if entropies is not None:
            ent = torch.as_tensor(entropies, dtype=torch.float64)
            out[f"entropy_{name}"] = float((ent * sel).sum() / n) if n else float("nan")
    nv = valid.sum()
    out["planning_ratio"] = float((plan & valid).sum() / nv) if nv else float("nan")
    return out


def fork_overlap(entropies, planning_mask, completion_mask=None, rho: float = 0.2) -> dict[str, float]:
    """Planning vs high-entropy "fork" tokens (the 80/20 method's top-rho by entropy).

    Returns ``planning_is_fork`` (share of planning tokens among the top-rho) and
    ``fork_is_planning`` (share of the top-rho tokens that are planning).
    """
    ent = torch.as_tensor(entropies, dtype=torch.float64)
    plan = torch.as_tensor(planning_mask).bool()
    valid = torch.ones_like(plan) if completion_mask is None else torch.as_tensor(completion_mask).bool()
    vals = ent[valid]
    if not len(vals):
        return {"planning_is_fork": float("nan"), "fork_is_planning": float("nan"), "threshold": float("nan")}
    k = max(1, int(round(rho * len(vals))))
    thr = torch.topk(vals, k).values.min()
    fork = (ent >= thr) & valid
    both = (fork & plan).sum()
    np_, nf = (plan & valid).sum(), fork.sum()
    return {
        "planning_is_fork": float(both / np_) if np_ else float("nan"),
        "fork_is_planning": float(both / nf) if nf else float("nan"),
        "threshold": float(thr),
    }


# --------------------------------------------------------------------------
# accuracy estimators and intervals


def pass_at_k(n, c, k: int) -> np.ndarray:
    """Unbiased pass@k per problem: ``1 - C(n-c, k)/C(n, k)`` for n samples with c correct."""
    n, c = np.atleast_1d(np.asarray(n, dtype=np.int64)), np.atleast_1d(np.asarray(c, dtype=np.int64))
    if n.shape != c.shape or n.ndim != 1:
        raise ValueError(f"n and c must have one entry per problem; got shapes {n.shape} and {c.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    if (c < 0).any() or (c > n).any():
        bad = int(np.flatnonzero((c < 0) | (c > n))[0])
        raise ValueError(f"need 0 <= c <= n for every problem; problem {bad} has n={n[bad]}, c={c[bad]}")
    if (k > n).any():
        raise ValueError(f"pass@{k} needs at least {k} samples per problem; got n={n.min()}")
    out = np.ones(len(n), dtype=np.float64)
    for j, (ni, ci) in enumerate(zip(n, c)):
        if ni - ci >= k:
            out[j] = 1.0 - float(np.prod(1.0 - k / np.arange(ni - ci + 1, ni + 1)))
    return out


def avg_at_k(correct) -> float:
    """avg@k: mean over problems of the mean correctness of their k samples ((P, k) array)."""
    a = np.asarray(correct, dtype=np.float64)
    return float(a.reshape(len(a), -1).mean(axis=1).mean()) if a.size else float("nan")
