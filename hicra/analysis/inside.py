"""Look inside a step's results: the "Look inside" sections of notebooks 01–06, one library call each.

Each view reads the files a step wrote (never a notebook's live objects) and shows examples next to the numbers:
the mined strategic grams in context with their precision against the sandbox's ground truth (01, paper §2.1), a
training run's first and last rollout groups with GRPO's A and HICRA's Â (02, §3), a reading of Fig 3 / Fig 5
whose numbers come from ``final_accuracy.csv`` (03), failed rollouts per oracle category (04, Fig 4) and strict
``\\boxed`` misses (06, Table 1). Text is HTML-escaped everywhere (``hicra.stepkit.plotting.highlight_html``).

    from hicra.analysis import inside
    display(HTML(inside.rollouts_html("runs/demo/train-hicra-s0", "last")))
"""

from __future__ import annotations

import ast
import html
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hicra.error_analysis import failed_rollouts, oracle_causes, step_files
from hicra.method.advantage import grpo_advantages
from hicra.method.methods import DEFAULT_ALPHA
from hicra.method.tagger import PlanningTagger, normalize_text
from hicra.runinfo import read_run, uses_alpha
from hicra.sandbox.world import ALL_GRAMS
from hicra.stepkit.plotting import PALETTE, highlight_html
from hicra.store.paths import resolve


def _div(text: str) -> str:
    return f'<div style="font-family:sans-serif;margin:6px 0">{text}</div>'


# --------------------------------------------------------------------------------------------------------------
# 01: grams in context, with their precision against the ground truth


def grams_in_context_html(run_dir, n: int = 6) -> str:
    """The ``n`` most frequent kept grams, each in an example from the mined rollouts, shaded by kind."""
    cands = pd.read_csv(resolve(run_dir) / "candidates.csv")
    kept = cands[cands.strategic.astype(bool)].sort_values("df", ascending=False).head(n)
    out = []
    for _, c in kept.iterrows():
        examples = ast.literal_eval(c["examples"]) if isinstance(c.get("examples"), str) else []
        ex = examples[0] if examples else ""
        i, j = ex.find("[["), ex.find("]]")  # hicra.grams.mine marks the gram in its snippet: [[gram]]
        spans = []
        if 0 <= i < j:
            ex = ex[:i] + ex[i + 2 : j] + ex[j + 2 :]
            spans = [(i, j - 2, c.gram, c.kind)]
        out.append(highlight_html(ex, spans, title=f"{c.gram!s} · {c.kind} · in {c.df} rollouts"))
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------------------
# 02: a run's rollouts, first and last step


def _rollout_step(run_dir, which: str) -> pd.DataFrame:

    files = step_files(run_dir)
    if not files:
        raise FileNotFoundError(f"{resolve(run_dir)}/rollouts/ has no step_*.parquet: train with save_rollouts")
    step = min(files) if which == "first" else max(files)
    return pd.read_parquet(files[step])


def _group_size(run_dir) -> int:
    p = resolve(run_dir) / "params.json"
    return int(json.loads(p.read_text()).get("num_generations", 8)) if p.exists() else 8


def rollout_advantages(df: pd.DataFrame, group_size: int) -> np.ndarray:
    """GRPO's group-normalised A per rollout (rows laid out group by group, as the trainer writes them)."""

    n = len(df) - len(df) % group_size
    A = np.zeros(len(df))
    A[:n] = grpo_advantages(df.reward.fillna(0).to_numpy()[:n].astype("float32"), group_size).numpy()
    return A


def run_alpha(run_dir, alpha: float | None = None) -> float:
    """The α that Â is shown with: ``alpha`` when given; else the run's own (its params.json, hicra.runinfo), so
    an α 0.1 run is shown with 0.1; else, for a run whose method has no α (GRPO), the paper's: what HICRA would
    give the same rollouts."""
    if alpha is not None:
        return alpha
    if (resolve(run_dir) / "params.json").exists():
        info = read_run(resolve(run_dir))
        if uses_alpha(info["method"]):
            return info["alpha"]
    return DEFAULT_ALPHA


def rollouts_html(run_dir, which: str = "first", n_groups: int = 1, alpha: float | None = None) -> str:
    """The first (or last) step's first ``n_groups`` groups: each completion with its planning spans shaded, its
    reward, GRPO's A and HICRA's Â on its planning tokens (α: ``run_alpha``)."""

    alpha = run_alpha(run_dir, alpha)
    df, G = _rollout_step(run_dir, which), _group_size(run_dir)
    A = rollout_advantages(df, G)
    kinds = {normalize_text(p): k for p, k in ALL_GRAMS}  # the sandbox's phrase kinds (other grams: one colour)
    out = [_div(f"<b>step {int(df.step.iloc[0])}</b> ({which}) · {len(df)} rollouts, groups of {G}")]
    for i in range(min(len(df), n_groups * G)):
        r = df.iloc[i]
        spans = [(s, e, g, kinds.get(normalize_text(g))) for s, e, g in json.loads(r.planning_spans or "[]")]
        a = float(A[i])
        hat = a + alpha * abs(a)
        title = f"group {i // G} · reward {r.reward:.0f} · A = {a:+.2f} · Â on planning (α {alpha:g}) = {hat:+.2f}"
        out.append(highlight_html(str(r.completion), spans, title=title))
    return "\n".join(out)


def plot_rollout_advantages(run_dir, alpha: float | None = None):
    """First vs last step: each rollout's A (GRPO) and Â on its planning tokens (HICRA, α: ``run_alpha``)."""

    alpha = run_alpha(run_dir, alpha)
    G = _group_size(run_dir)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), sharey=True)
    for ax, which in zip(axes, ("first", "last")):
        df = _rollout_step(run_dir, which)
        A = rollout_advantages(df, G)
        x = np.arange(len(df))
        ax.bar(x - 0.2, A, 0.4, color=PALETTE["grpo"], label="GRPO: A (every token)")
        ax.bar(
            x + 0.2, A + alpha * np.abs(A), 0.4, color=PALETTE["hicra"], label=f"HICRA: Â on planning (α = {alpha:g})"
        )
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set(xlabel="rollout (groups side by side)", title=f"step {int(df.step.iloc[0])} ({which})")
    axes[0].set_ylabel("advantage")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------------------
# 03: a reading of the figure, numbers from the data


# --------------------------------------------------------------------------------------------------------------
# 04: failures per category; 06: strict \boxed misses


def failures_html(runs, per_category: int = 2, seed: int = 0) -> str:
    """``per_category`` failed rollouts per oracle category (planning / calculation), planning spans shaded,
    the oracle's label in each title."""

    df = failed_rollouts(runs)
    df["cause"] = oracle_causes(df)

    tagger, kinds = PlanningTagger([p for p, _ in ALL_GRAMS]), {normalize_text(p): k for p, k in ALL_GRAMS}
    out = []
    for cause, g in df.dropna(subset=["cause"]).groupby("cause"):
        for _, r in g.sample(min(per_category, len(g)), random_state=seed).iterrows():
            title = f"oracle: {cause} · {r.method} seed {r.seed} · step {r.step}"
            out.append(
                highlight_html(
                    r.prompt + str(r.completion), _shift(tagger.spans(str(r.completion)), r.prompt, kinds), title
                )
            )
    return "\n".join(out) or _div("no failed rollout in these runs")


def _shift(spans, prompt: str, kinds: dict):
    return [(s + len(prompt), e + len(prompt), g, kinds.get(g)) for s, e, g in spans]


def strict_misses_html(run_dir, n: int = 3) -> str:
    """Samples that the lenient grader accepts and strict ``\\boxed`` refuses (the answer is right, the box is
    missing or holds something else), from ``scores/*.parquet``."""
    rows = []
    for f in sorted((resolve(run_dir) / "scores").glob("*.parquet")):
        df = pd.read_parquet(f)
        for _, r in df.iterrows():
            for k, (c, lenient) in enumerate(zip(r.correct, r.lenient)):
                if lenient and not c:
                    rows.append((f.stem, r.id, k, r.completions[k]))
    head = _div(f"<b>{len(rows)}</b> samples right by the lenient rule and wrong by strict \\boxed")
    body = [
        highlight_html(str(text)[-600:], [], title=f"{cell} · problem {pid} · sample {k}")
        for cell, pid, k, text in rows[:n]
    ]
    return "\n".join([head, *body]) if rows else head + _div(html.escape("none: every lenient hit was also boxed"))
