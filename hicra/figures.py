"""Paper figures from run folders: Fig 3 (dynamics) and Fig 5/6/8 (method comparison); step 03.

Reads ``<run>/metrics.jsonl`` (+ ``params.json`` for method and seed), so the
notebooks never depend on another notebook's live objects. Seeds are drawn as
a mean line with a shaded min-max band (one seed: just the line). ``run`` is
the step behind notebook 03 and its CLI twin:

    python -m hicra.figures --runs '["runs/demo/train-grpo-s0", "runs/demo/train-hicra-s0"]' --run_dir runs/demo
    from hicra.figures import load_runs, fig3_dynamics
    fig = fig3_dynamics(load_runs(["runs/demo/train-grpo-s0", "runs/demo/train-hicra-s0"]))
"""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hicra.method.methods import fig5_methods
from hicra.method.stats import relative
from hicra.method.stats import t_interval as mean_ci
from hicra.runinfo import run_arm
from hicra.stepkit.plotting import KIND_COLOURS, PALETTE, save_step_figure, setup_style
from hicra.stepkit.steps import StepConfig, cli_main, start_step
from hicra.store.io import read_metrics
from hicra.store.paths import resolve
from hicra.store.sgfile import KINDS


def load_runs(run_dirs) -> pd.DataFrame:
    """All metrics lines of the given runs, with ``method``, ``seed`` and ``run`` columns."""
    frames = []
    for d in run_dirs:
        d = resolve(d)
        path = d / "metrics.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: train that run first (python -m hicra.train ...)")
        df = pd.DataFrame(read_metrics(path))
        df["method"], df["seed"] = run_arm(d, "hicra")
        df["run"] = d.name
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _band(ax, df, x, y, label, color, relative_to_start=False, delta=False, smooth: int = 1):
    if y not in df or df[y].isna().all():  # a metric this run did not log (e.g. no validation on a GPU recipe)
        return
    piv = df.pivot_table(index=x, columns="run", values=y)
    if smooth > 1:  # per-step metrics of 8 prompts are noisy: trailing mean over `smooth` steps
        piv = piv.rolling(smooth, min_periods=1).mean()
    if relative_to_start:
        piv = piv.apply(lambda c: pd.Series(relative(c.values), index=c.index))
    if delta:
        piv = piv - piv.bfill().iloc[0]
    piv = piv.dropna(how="all")
    if piv.empty:
        return
    m = piv.mean(axis=1)
    sparse = len(m) <= 12  # e.g. validation every N steps: show the points
    ax.plot(m.index, m.values, label=label, color=color, lw=2, marker="o" if sparse else None, ms=4)
    if piv.shape[1] > 1:
        ax.fill_between(m.index, piv.min(axis=1), piv.max(axis=1), color=color, alpha=0.2, lw=0)


def fig3_dynamics(df: pd.DataFrame, method: str | None = None, smooth: int = 5):
    """Paper Fig 3 in four columns for one method (all its seeds); per-step curves smoothed over ``smooth`` steps."""
    d = df if method is None else df[df.method == method]
    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
    _band(ax[0], d, "step", "ppl_planning", "planning", PALETTE["planning"], relative_to_start=True, smooth=smooth)
    _band(ax[0], d, "step", "ppl_execution", "execution", PALETTE["execution"], relative_to_start=True, smooth=smooth)
    ax[0].set(title="Relative perplexity", ylabel="perplexity / first step")
    _band(ax[1], d, "step", "entropy_planning", "planning", PALETTE["planning"], smooth=smooth)
    _band(ax[1], d, "step", "entropy_execution", "execution", PALETTE["execution"], smooth=smooth)
    ax[1].set(title="Token entropy", ylabel="entropy (nats)")
    _band(
        ax[2], d, "step", "semantic_entropy", "semantic entropy (SGs)", PALETTE["planning"], delta=True, smooth=smooth
    )
    _band(
        ax[2],
        d,
        "step",
        "conditional_entropy",
        "conditional entropy (next bigram | SG)",
        PALETTE["execution"],
        delta=True,
        smooth=smooth,
    )
    ax[2].axhline(0, color="grey", lw=0.8)
    ax[2].set(title="Strategy diversity", ylabel="change since start (bits)")
    if "val_accuracy" in d and d.val_accuracy.notna().any():
        _band(ax[3], d.dropna(subset=["val_accuracy"]), "step", "val_accuracy", "val accuracy", PALETTE["grpo"])
        ax[3].set(title="Validation accuracy & length", ylabel="accuracy (T = 1)")
    else:  # no validation (a GPU recipe): the training reward instead, said in the title
        _band(ax[3], d, "step", "reward", "training reward", PALETTE["grpo"], smooth=smooth)
        ax[3].set(title="Training reward & length (no validation)", ylabel="mean reward")
    ax3b = ax[3].twinx()
    _band(ax3b, d, "step", "length", "mean length", PALETTE["base"], smooth=smooth)
    ax3b.set_ylabel("completion length (tokens)")
    ax3b.grid(False)
    for a in ax:
        a.set_xlabel("RL step")
    for a in ax[:3]:
        a.legend(loc="best", fontsize=8)
    handles = [h for a in (ax[3], ax3b) for h in a.get_legend_handles_labels()[0]]  # the length line too
    ax3b.legend(handles, [h.get_label() for h in handles], loc="best", fontsize=8)  # on top of both axes
    seeds = sorted(int(x) for x in d.seed.unique())
    fig.suptitle(
        f"Hierarchy dynamics · {method or ', '.join(sorted(d.method.unique()))} · seeds {seeds}"
        f" · per-step curves: {smooth}-step mean, "
        + ("bands: seed min-max" if len(seeds) > 1 else "one seed: an example"),
        y=1.03,
    )
    fig.tight_layout()
    return fig


def fig_methods(df: pd.DataFrame, methods=None, smooth: int = 5):
    """Paper Fig 5/6/8: semantic entropy, validation accuracy, pass@k and token entropy per method (``methods``: the
    registry's Fig 5 methods, ``hicra.method.methods.fig5_methods``)."""
    methods = fig5_methods() if methods is None else methods
    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
    panels = [
        ("semantic_entropy", "Semantic entropy (bits)"),
        ("val_accuracy", "Validation accuracy (T = 1)"),
        ("pass_at_k", "pass@8 on training groups"),
        ("entropy_execution", "Token entropy, execution (nats)"),
    ]
    logged = lambda c: c in df and df[c].notna().any()  # noqa: E731
    if not logged("val_accuracy") and logged("reward"):  # no validation (a GPU recipe, the rehearsal): the reward
        panels[1] = ("reward", "Training reward (no validation)")
    for a, (col, title) in zip(ax, panels):
        for m in methods:
            sub = df[df.method == m]
            if col in sub:
                _band(
                    a,
                    sub.dropna(subset=[col]),
                    "step",
                    col,
                    m,
                    PALETTE.get(m, "black"),
                    smooth=1 if col in ("val_accuracy", "reward") else smooth,
                )
        a.set(title=title, xlabel="RL step")
        if a.lines:
            a.legend(loc="best", fontsize=8)
        else:  # e.g. a GPU recipe that validates on no held-out set: say so instead of an empty frame
            a.text(0.5, 0.5, f"not logged by these runs\n({col})", ha="center", va="center", transform=a.transAxes)
    n = df.groupby("method").seed.nunique().to_dict()
    fig.suptitle(
        "Method comparison · seeds per method: "
        + ", ".join(f"{k} {v}" for k, v in sorted(n.items()))
        + f" · per-step curves: {smooth}-step mean"
        + (" · bands: seed min-max" if max(n.values(), default=1) > 1 else " · one seed: an example"),
        y=1.03,
    )
    fig.tight_layout()
    return fig


def final_table(df: pd.DataFrame, col: str = "val_accuracy", diff=("hicra", "grpo")) -> pd.DataFrame:
    """Final value of ``col`` per run, then mean and 95% t-interval over seeds per method, plus a row
    ``hicra − grpo``: the difference paired by seed (same seed, same warm start, same validation set),
    and first a ``warm_start`` row: the step-0 value (where RL starts) over the runs that logged one."""

    if col not in df:
        raise ValueError(f"the runs logged no {col!r} (columns: {sorted(df.columns)})")
    last = df.dropna(subset=[col]).sort_values("step").groupby("run").tail(1)
    rows = []
    start = df[(df.step == 0)].dropna(subset=[col]) if col in df else df.iloc[:0]
    if len(start):
        mean, lo, hi = mean_ci(start[col].tolist())
        rows.append({"method": "warm_start", "seeds": len(start), col: mean, "ci_lo": lo, "ci_hi": hi})
    for m, g in last.groupby("method"):
        mean, lo, hi = mean_ci(g[col].tolist())
        rows.append({"method": m, "seeds": len(g), col: mean, "ci_lo": lo, "ci_hi": hi})
    a, b = diff
    pa, pb = (last[last.method == x].set_index("seed")[col] for x in diff)
    paired = (pa - pb).dropna()
    if len(paired):
        mean, lo, hi = mean_ci(paired.tolist())
        rows.append({"method": f"{a} − {b}", "seeds": len(paired), col: mean, "ci_lo": lo, "ci_hi": hi})
    return pd.DataFrame(rows)


def fig_grams(candidates: pd.DataFrame, summary: dict, top: int = 8):
    """Strategic grams: the most frequent accepted grams per kind (document frequency), and, on the
    sandbox, token-level precision / recall against the ground truth (all seeds vs seeds held out)."""

    quality = summary.get("precision") is not None
    fig, axes = plt.subplots(
        1,
        4 if quality else 3,
        figsize=(17 if quality else 14, 4.2),
        gridspec_kw={"width_ratios": [1, 1, 1, 0.8] if quality else [1, 1, 1]},
    )
    n_docs = summary.get("n_successful") or 1
    for ax, kind in zip(axes, KINDS):
        d = candidates[candidates.strategic & (candidates.kind == kind)].nlargest(top, "df")[::-1]
        ax.barh(d.gram, d.df / n_docs, color=KIND_COLOURS[kind], edgecolor="0.3")
        ax.set_title(f"{kind} ({int((candidates.strategic & (candidates.kind == kind)).sum())} grams)")
        ax.set_xlabel("share of rollouts containing it")
        ax.tick_params(axis="y", labelsize=9)
    if quality:
        ax = axes[-1]
        hold = summary.get("holdout") or {}
        labels, prec, rec = ["all seeds"], [summary["precision"]], [summary["recall"]]
        if hold:
            labels.append("seeds overlapping\nsandbox held out")
            prec.append(hold["precision"])
            rec.append(hold["recall"])
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], prec, 0.4, label="precision", color="#4c72b0")
        ax.bar([i + 0.2 for i in x], rec, 0.4, label="recall", color="#dd8452")
        for i, (p, r) in enumerate(zip(prec, rec)):
            ax.text(i - 0.2, p + 0.01, f"{p:.2f}", ha="center", fontsize=9)
            ax.text(i + 0.2, r + 0.01, f"{r:.2f}", ha="center", fontsize=9)
        ax.axhline(0.9, ls="--", color="0.4", lw=1)
        ax.set_xticks(list(x), labels, fontsize=9)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("token-level score vs ground truth")
        ax.set_title("quality on the sandbox")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.suptitle(
        f"Strategic grams mined from {summary.get('n_successful')} of {summary.get('n_rollouts')} rollouts "
        f"({summary.get('annotator')}, {summary.get('n_grams')} of {summary.get('n_candidates')} candidates kept)",
        y=1.03,
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# the step: notebooks/03_dynamics.ipynb and python -m hicra.figures


@dataclasses.dataclass
class FiguresConfig(StepConfig):
    run_dir: str = "runs/demo"
    runs: list = dataclasses.field(
        default_factory=lambda: [
            "runs/demo/train-grpo-s0",
            "runs/demo/train-hicra-s0",
            "runs/demo/train-entropy_reg-s0",
        ],
        metadata={"help": "training run folders to draw (metrics.jsonl + params.json)"},
    )
    fig3_method: str = "hicra"  # Fig 3 shows this method's seeds (all runs if it is absent)


def run(cfg: FiguresConfig) -> dict:
    """Fig 3, Fig 5/6/8 and ``final_accuracy.csv`` (final validation accuracy per method, 95 % CIs over seeds,
    with the warm start's row), in the run folder and as ``<figures_dir>/<tag>_final_accuracy.csv``."""

    out = start_step(cfg, "03_dynamics")
    setup_style()
    df = load_runs(cfg.runs)
    figs = [
        save_step_figure(
            fig3_dynamics(df, cfg.fig3_method if cfg.fig3_method in set(df.method) else None), cfg, "fig3_dynamics"
        ),
        save_step_figure(
            fig_methods(df[df.method.isin(fig5_methods())], [m for m in fig5_methods() if m in set(df.method)]),
            cfg,
            "fig5_methods",
        ),
    ]  # the paper's methods; the study's variants: study_curves
    # runs without validation (a GPU recipe, the rehearsal) are summarised by their last step's training reward
    col = "val_accuracy" if "val_accuracy" in df and df.val_accuracy.notna().any() else "reward"
    table = final_table(df, col)
    table.to_csv(out / "final_accuracy.csv", index=False)
    table.to_csv(resolve(cfg.figures_dir) / f"{cfg.tag}_final_accuracy.csv", index=False)  # beside the figures
    return {
        "run_dir": str(out),
        "runs": len(cfg.runs),
        "figures": figs,
        "final_column": col,
        "final_accuracy": table.to_dict("records"),
    }


if __name__ == "__main__":
    cli_main(FiguresConfig, run)


def reading(run_dir) -> str:
    """Notebook 03's look inside: sentences that read Fig 5's end point from ``final_accuracy.csv`` (mean and
    95 % CI over seeds): validation accuracy, or, for runs without validation (a GPU recipe, the rehearsal), the
    last step's training reward, said as such."""
    t = pd.read_csv(resolve(run_dir) / "final_accuracy.csv").set_index("method")
    col = "val_accuracy" if "val_accuracy" in t.columns else "reward"

    def cell(m):
        r = t.loc[m]
        ci = f" [{r.ci_lo:.3f}, {r.ci_hi:.3f}]" if np.isfinite(r.ci_lo) and np.isfinite(r.ci_hi) else ""
        return f"{r[col]:.3f}{ci} ({int(r.seeds)} seed{'' if int(r.seeds) == 1 else 's'})"

    methods = [m for m in t.index if m != "warm_start" and "−" not in m]
    lines = (
        []
        if col == "val_accuracy"
        else ["These runs log no validation: the numbers are the last step's training reward."]
    )
    lines += [f"The warm start scores {cell('warm_start')}." if "warm_start" in t.index else ""]
    lines += [f"After RL, {m} reaches {cell(m)}." for m in methods]
    lines += [f"The paired difference {m} is {cell(m)}: {_reading_verdict(t.loc[m])}." for m in t.index if "−" in m]
    return " ".join(x for x in lines if x)


def _reading_verdict(r) -> str:
    if not np.isfinite(r.ci_lo) or not np.isfinite(r.ci_hi):
        return "one seed, no interval: an example, not a result"
    return "its interval excludes 0" if r.ci_lo > 0 or r.ci_hi < 0 else "its interval includes 0 (inconclusive)"
