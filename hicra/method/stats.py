"""Every interval and test the project reports, in one place, on scipy.

Why: a study's numbers are only as trustworthy as their intervals; one implementation of each, tested on hand
numbers, is used by the study, the evaluation, the figures and the sandbox calibration.

* ``t_interval``: mean with a Student-t interval (seed means, paired differences); ``summarise`` adds the
  two-sided p against 0 and the minimum detectable effect at 80 % power (the study's pre-registered statistics).
* ``holm``: Holm step-down adjusted p-values.
* ``bootstrap_ci``: mean with a percentile-bootstrap interval (``scipy.stats.bootstrap``; per-problem scores).
* ``wilson``: a proportion with its Wilson interval (``scipy.stats.binomtest(...).proportion_ci``).

    from hicra.method.stats import summarise, wilson
    summarise([0.01, 0.03, 0.02])      # {"n", "mean", "lo", "hi", "p", "mde"}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

NAN3 = (math.nan, math.nan, math.nan)


def _finite(values) -> np.ndarray:
    return np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval ``(mean, lo, hi)`` of the finite values; one value gives (v, nan, nan)."""
    v = _finite(values)
    if len(v) == 0:
        return NAN3
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan
    h = float(stats.sem(v) * stats.t.ppf((1 + confidence) / 2, len(v) - 1))
    return m, m - h, m + h


def summarise(values) -> dict:
    """Mean, 95 % t-interval, two-sided p against 0 and the 80 %-power MDE of ``values`` (paired differences):
    MDE = (t_0.975,n-1 + t_0.8,n-1) * SD / sqrt(n)."""
    v = _finite(values)
    n = len(v)
    if n < 2:
        return {
            "n": n,
            "mean": float(v.mean()) if n else math.nan,
            "lo": math.nan,
            "hi": math.nan,
            "p": math.nan,
            "mde": math.nan,
        }
    m, lo, hi = t_interval(v)
    sd = v.std(ddof=1)
    p = float(stats.ttest_1samp(v, 0).pvalue) if sd > 0 else (1.0 if m == 0 else 0.0)
    return {
        "n": n,
        "mean": m,
        "lo": lo,
        "hi": hi,
        "p": p,
        "mde": float((stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / math.sqrt(n)),
    }


def holm(pvalues: list[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order (NaN stays NaN)."""
    m, order, adj, running = len(pvalues), np.argsort(pvalues), [math.nan] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        if math.isfinite(pvalues[i]):
            running = max(running, min(1.0, (m - rank) * pvalues[i]))
            adj[i] = running
    return adj


def bootstrap_ci(values, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval ``(mean, lo, hi)`` over the values (e.g. per-problem scores)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return NAN3
    if len(v) == 1 or np.all(v == v[0]):
        return float(v.mean()), float(v[0]), float(v[0])
    res = stats.bootstrap(
        (v,),
        np.mean,
        n_resamples=n_boot,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(v.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Proportion and Wilson interval ``(p, lo, hi)`` for ``k`` successes in ``n`` trials."""
    if n == 0:
        return NAN3
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def relative(series: Sequence[float]) -> np.ndarray:
    """A series divided by its first finite value (relative perplexity, §2.2)."""
    s = np.asarray(series, dtype=np.float64)
    finite = s[np.isfinite(s)]
    if not len(finite) or finite[0] == 0:
        return np.full_like(s, np.nan)
    return s / finite[0]


def curve_auc(steps, values) -> float:
    """Area under an accuracy curve divided by its span of steps (trapezoid): the curve's mean level, the study's
    AUC endpoint (and the held-out one); NaN with fewer than two points."""
    x, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    return float(np.trapezoid(y, x) / (x[-1] - x[0])) if len(x) > 1 else math.nan
