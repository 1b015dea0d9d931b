"""The study's figures (``hicra.study.run`` draws them; notebook 07 shows them).

* ``fig_curves``: the Fig 5/6/8 analogue: validation accuracy, semantic entropy, completion length and
  planning ratio per method over training, mean with a 95 % t-band over seeds.
* ``fig_effects``: every planned comparison against GRPO (paired by seed) with its 95 % interval and MDE.
* ``fig_alpha_sweep``: final accuracy against alpha, seeds as dots, means with 95 % intervals, the fitted slope.

    from hicra.study import load, per_run, comparisons
    from hicra.analysis.study_figures import fig_curves
    fig_curves(load("runs/study"))
"""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hicra.method.methods import DEFAULT_ALPHA, REGISTRY
from hicra.method.stats import summarise
from hicra.stepkit.plotting import PALETTE
from hicra.store.paths import resolve

LABEL = {
    "final": "final accuracy",
    "auc": "area under the curve",
    "steps_to_plus10": "steps to warm + 10 pts",
    "planning_share_change": "Fig 4: planning share of failures, last − first 10 % of steps",
}


def fig_curves(df: pd.DataFrame, smooth: int = 5):
    panels = [
        ("val_accuracy", "Validation accuracy (avg@k, T = 1)"),
        ("semantic_entropy", "Semantic entropy (bits)"),
        ("length", "Completion length (tokens)"),
        ("planning_ratio", "Planning-token ratio"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    methods = [m for m in REGISTRY if m in set(df.arm)] + sorted(
        set(df.arm) - set(REGISTRY) - {a for a in df.arm if a.startswith("hicra-a")}
    )
    for ax, (col, title) in zip(axes, panels):
        for m in methods:
            piv = df[df.arm == m].pivot_table(index="step", columns="seed", values=col)
            if col != "val_accuracy":
                piv = piv[piv.index > 0].rolling(smooth, min_periods=1).mean()
            piv = piv.dropna(how="all")
            if piv.empty:
                continue
            s = [summarise(row.dropna()) for _, row in piv.iterrows()]
            mean = np.array([x["mean"] for x in s])
            ax.plot(
                piv.index,
                mean,
                color=PALETTE.get(m, "black"),
                lw=2,
                label=f"{m} ({piv.shape[1]} seeds)",
                marker="o" if len(piv) <= 12 else None,
                ms=4,
            )
            lo, hi = np.array([x["lo"] for x in s]), np.array([x["hi"] for x in s])
            ax.fill_between(piv.index, lo, hi, color=PALETTE.get(m, "black"), alpha=0.15, lw=0)
        ax.set(title=title, xlabel="RL step")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(
        f"Methods over training · bands: 95 % t-interval over seeds · per-step panels: {smooth}-step mean", y=1.02
    )
    fig.tight_layout()
    return fig


XLABEL = {
    "final": "accuracy difference (points)",
    "auc": "mean accuracy over training, difference (points)",
    "planning_share_change": "difference in the change of the share (points);\n< 0: falls faster than GRPO",
}


def fig_effects(comp: pd.DataFrame, ref: str = "grpo"):
    """Each arm against ``ref``, paired by seed: one panel per endpoint (final accuracy, AUC and, where the runs
    saved rollouts, the Fig 4 planning share of failures), mean with its 95 % t-interval, n and MDE beside it."""
    ends = [
        e
        for e in ("final", "auc", "planning_share_change")
        if e in set(comp.endpoint) and comp[comp.endpoint == e]["mean"].notna().any()
    ]
    fig, axes = plt.subplots(
        1, len(ends), figsize=(5.6 * len(ends), max(3.2, 0.55 * comp.arm.nunique() + 2.2)), squeeze=False
    )
    for ax, e in zip(axes[0], ends):
        c = comp[comp.endpoint == e].reset_index(drop=True)
        y = np.arange(len(c))[::-1]
        for yi, (_, r) in zip(y, c.iterrows()):
            col = PALETTE.get(r.arm, "0.35")
            ax.errorbar(
                100 * r["mean"],
                yi,
                xerr=[[100 * (r["mean"] - r["lo"])], [100 * (r["hi"] - r["mean"])]],
                fmt="o",
                color=col,
                capsize=4,
                lw=2,
            )
            if math.isfinite(r["mde"]):
                ax.annotate(
                    f"n={int(r['n'])}, MDE {100 * r['mde']:.1f}",
                    (100 * r["mean"], yi),
                    fontsize=8,
                    color="0.3",
                    textcoords="offset points",
                    xytext=(0, 9),
                    ha="center",
                )
        ax.axvline(0, color="0.3", lw=1, ls="--")
        ax.set_yticks(y, [f"{a} − {ref}" for a in c.arm])
        ax.set_ylim(-0.7, len(c) - 0.3)
        ax.set(xlabel=XLABEL[e], title=LABEL[e][0].upper() + LABEL[e][1:])
    fig.suptitle("Each arm against GRPO, paired by seed: mean difference with its 95 % t-interval", y=1.02)
    fig.tight_layout()
    return fig


def sweep_recipe(run_dir, runs: pd.DataFrame) -> str:
    """The recipe behind the sweep's points, from each run's params.json: "64 completions a step × 100 steps", or
    every recipe found when they differ (a sweep re-read beside runs of another recipe says so on its figure)."""

    found = set()
    for arm, seed in runs[["arm", "seed"]].itertuples(index=False):
        f = resolve(run_dir) / f"train-{arm}-s{seed}" / "params.json"
        if f.exists():
            p = json.loads(f.read_text())
            per = p.get("per_device_train_batch_size", 0) * p.get("gradient_accumulation_steps", 1)
            found.add((per * (p.get("processes") or 1), p.get("max_steps")))
    text = " / ".join(f"{c} completions a step × {n} steps" for c, n in sorted(found, key=str))
    return ("recipe: " if len(found) == 1 else "recipes differ: ") + text if found else ""


def fig_alpha_sweep(runs: pd.DataFrame, slope: dict, recipe: str = ""):
    """Final accuracy against alpha; ``recipe`` (``sweep_recipe``) is written under the title."""
    pts = runs[runs.method.isin(["grpo", "hicra"])].dropna(subset=["alpha", "final"])
    if slope.get("seeds"):  # the seeds the slope used: those run at every alpha
        pts = pts[pts.seed.isin(slope["seeds"])]
    alphas = sorted(pts.alpha.unique())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rng = np.random.default_rng(0)
    for i, a in enumerate(alphas):
        v = pts[pts.alpha == a].final.to_numpy()
        ax.scatter(np.full(len(v), i) + rng.uniform(-0.12, 0.12, len(v)), v, color="0.55", s=18, zorder=2)
        s = summarise(v)
        ax.errorbar(
            i,
            s["mean"],
            yerr=[[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]] if s["n"] > 1 else None,
            fmt="s",
            color=PALETTE["hicra"],
            capsize=5,
            ms=7,
            lw=2,
            zorder=3,
        )
    ax.set_xticks(
        range(len(alphas)),
        [f"{a:g}" + (" (GRPO)" if a == 0 else " (paper)" if a == DEFAULT_ALPHA else "") for a in alphas],
    )
    ax.set(
        xlabel="HICRA alpha",
        ylabel="final validation accuracy",
        title=f"Alpha sweep ({len(slope.get('seeds') or [])} seeds each): slope {slope['slope']:+.3f} "
        f"[{slope['lo']:+.3f}, {slope['hi']:+.3f}] per unit alpha" + (f"\n{recipe}" if recipe else ""),
    )
    fig.tight_layout()
    return fig
