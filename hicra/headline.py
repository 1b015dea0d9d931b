"""The README's headline results, generated from the CSV tables the study steps write (never typed by hand).

Why: numbers typed into a README go stale the moment a study is re-run. This module reads each study's per-run table
``figures/<tag>_runs.csv`` (``hicra.study``; seed, arm, α, every endpoint at full precision) and recomputes the
paired comparisons from it (``hicra.study.comparisons``); an endpoint the per-run table lacks comes from
``<tag>_comparisons.csv`` (run 4's table, rebuilt by scripts/run4_runs.py, has exact step-100 accuracies only). The
regime maps come from ``<tag>_map.csv`` (``hicra.regimes``), their comparisons recomputed from the map's
``<tag>_runs.csv`` where it is committed (``map_table``). Every study and regime shows its AUC beside its accuracy,
each row says whether its endpoint was primary in that study's plan (docs/study.md: run 4's primary is step-100
accuracy, run 5's confirmatory endpoint the AUC, the maps' the accuracy at their last step), and each row's n is the
number of values behind it (a plateau judged on fewer seeds than the row's says so). ``python -m hicra.headline``
rewrites the block between the README's ``<!-- headline:begin -->`` and ``<!-- headline:end -->`` markers; tests
fail when the README's block differs from what the CSVs say, or when a committed comparison differs from its
recomputation (tests/test_headline.py).

    python -m hicra.headline            # rewrite README.md's headline block from figures/
    python -m hicra.headline --check    # exit 1 if the README's block is stale
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

from hicra.method.stats import summarise
from hicra.runinfo import hicra_arm
from hicra.store.paths import REPO_ROOT, resolve
from hicra.study import _verdict, comparisons, map_dynamics

BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"
# (tag of the CSVs, what the rows say, the primary endpoint of that study's plan) in the order shown
STUDIES = (
    ("study", "study of record (`make study`, run 4: seeds 0–9)", "final"),
    ("study-replication", "confirmatory replication (`make replication`, run 5: seeds 1000–1009)", "auc"),
    ("replication-lock", "run 5 re-run in the locked environment (run 6: seeds 1000–1009)", "auc"),
)
MAPS = (
    ("regimes", "regime map, first run (`make regimes`; environment not recorded; from its summaries)", "final"),
    ("regimes-lock", "regime map re-run in the locked environment (run 7, the map's record: seeds 2000–2007)", "final"),
    ("regimes-long", "strategy to the plateau (`make regimes-long`; from its summaries)", "final"),
    (
        "regimes-long-lock",
        "strategy to the plateau re-run in the locked environment (its record: seeds 2000–2007)",
        "final",
    ),
)
ENDPOINTS = (  # endpoint, its name in a row, whether HICRA's claim is a positive difference
    ("final", "step-{steps} accuracy", True),
    ("auc", "area under the curve", True),
    ("planning_share_change", "Fig 4 planning share of failures (last − first 10 % of steps)", False),
)


def _pts(m, lo, hi) -> str:
    """Points with the typographic minus, as the prose around the headline writes them: −0.8 [−4.2, +2.5]."""
    return f"{100 * m:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]".replace("-", "−")


def _reading(lo, hi, positive=True) -> str:
    v = _verdict(lo, hi, positive)
    return {
        "reproduced": "HICRA better" if positive else "falls faster under HICRA",
        "not reproduced": "GRPO better" if positive else "falls faster under GRPO",
    }.get(v, "inconclusive")


def _role(endpoint: str, primary: str) -> str:
    return "primary" if endpoint == primary else "secondary"


def study_comparisons(figs, tag: str) -> pd.DataFrame | None:
    """HICRA - GRPO per endpoint: recomputed from ``<tag>_runs.csv`` where it has the endpoint, else the committed
    ``<tag>_comparisons.csv`` row; None without either table."""
    runs_f, comp_f = figs / f"{tag}_runs.csv", figs / f"{tag}_comparisons.csv"
    comp = pd.read_csv(comp_f) if comp_f.exists() else None
    if not runs_f.exists():
        return comp
    runs = pd.read_csv(runs_f)
    done = comparisons(runs[[c for c in runs if c not in ("environment",)]].dropna(axis=1, how="all"))
    if comp is not None:
        have = set(zip(done.endpoint, done.arm))
        done = pd.concat([done, comp[[(e, a) not in have for e, a in zip(comp.endpoint, comp.arm)]]])
    return done.reset_index(drop=True)


MAP_ENDPOINTS = (("final", "final"), ("auc", "auc"), ("planning_share_change", "fig4"))  # endpoint, map prefix


def map_table(figs, tag: str) -> pd.DataFrame | None:
    """``<tag>_map.csv`` (None without it); where ``<tag>_runs.csv`` exists, every regime's arm means and HICRA - GRPO
    comparisons (``grpo_final``, ``hicra_final``, ``final_*``, ``auc_*``, ``fig4_*``) recomputed from it, and where it
    has them the plateau check (``grpo_last50*``, ``grpo_plateau``, from each run's ``last50``) and each arm's
    semantic-entropy change (``sem_entropy_change_*``): the per-run table is the source, and a value it cannot give is
    NaN, never the map's. The warm start's anatomy stays the map's (the per-run table does not hold it). A map and a
    runs table that name different regimes are refused (write both with ``python -m hicra.regimes``)."""
    map_f, runs_f = figs / f"{tag}_map.csv", figs / f"{tag}_runs.csv"
    if not map_f.exists():
        return None
    m = pd.read_csv(map_f)
    if not runs_f.exists():
        return m
    runs = pd.read_csv(runs_f)
    finished = set(m.regime[m.seeds.notna()]) if "seeds" in m else set(m.regime[m.final_mean.notna()])  # with runs
    if finished != set(runs.regime):
        raise ValueError(
            f"{map_f.name} reports regimes {sorted(finished)} with runs, {runs_f.name} has runs of "
            f"{sorted(set(runs.regime))}: write both from the same runs with python -m hicra.regimes"
        )
    for i, r in m[m.regime.isin(finished)].iterrows():
        sub = runs[runs.regime == r.regime].drop(columns=["regime", "environment"], errors="ignore")
        arm = r.hicra_arm if isinstance(r.get("hicra_arm"), str) else hicra_arm(sub.arm)
        m.loc[i, "grpo_final"] = sub[sub.arm == "grpo"].final.mean()  # NaN without runs of the arm
        m.loc[i, "hicra_final"] = sub[sub.arm == arm].final.mean()
        comp = comparisons(sub.dropna(axis=1, how="all"))
        for endpoint, prefix in MAP_ENDPOINTS:
            c = comp[(comp.endpoint == endpoint) & (comp.arm == arm)] if len(comp) else comp
            for k in ("n", "mean", "lo", "hi", "mde"):
                if k in ("mean", "lo", "hi") or prefix != "fig4":  # the map keeps no Fig 4 n or MDE
                    m.loc[i, f"{prefix}_{k}"] = c.iloc[0][k] if len(c) else math.nan
        for k, v in map_dynamics(sub, arm).items():  # the plateau check, semantic entropy: as hicra.regimes has them
            m.loc[i, k] = v
    return m


def rows(figures_dir="figures") -> list[tuple]:
    """(result, source, value with 95 % CI, n, reading) rows from whichever tables exist."""
    figs, out = resolve(figures_dir), []
    for tag, source, primary in STUDIES:
        c = study_comparisons(figs, tag)
        if c is None:
            continue
        runs_f, fin = figs / f"{tag}_runs.csv", figs / f"{tag}_final_accuracy.csv"
        warm = pd.read_csv(fin).set_index("method").val_accuracy.get("warm_start") if fin.exists() else None
        runs = pd.read_csv(runs_f) if runs_f.exists() else None
        steps = int(runs.steps.max()) if runs is not None and "steps" in runs else 100
        if warm is not None and runs is not None and (runs.arm == "grpo").any():
            g = summarise((runs[runs.arm == "grpo"].final - warm).tolist())
            out.append(
                (f"GRPO − warm start, step-{steps} accuracy", source, _pts(g["mean"], g["lo"], g["hi"]), _n(g["n"]), "")
            )
        elif warm is not None and (figs / f"{tag}_arms.csv").exists():
            a = pd.read_csv(figs / f"{tag}_arms.csv").set_index("arm")
            if "grpo" in a.index:
                g = a.loc["grpo"]
                val = _pts(g.final - warm, g.final_lo - warm, g.final_hi - warm)
                out.append((f"GRPO − warm start, step-{steps} accuracy", source, val, _n(g.seeds), ""))
        for endpoint, name, positive in ENDPOINTS:
            r = c[(c.endpoint == endpoint) & (c.arm == "hicra")]
            if not len(r) or not math.isfinite(r.iloc[0]["mean"]):
                continue
            r = r.iloc[0]
            out.append(
                (
                    f"HICRA − GRPO, {name.format(steps=steps)} ({_role(endpoint, primary)})",
                    source,
                    f"{_pts(r['mean'], r.lo, r.hi)}, MDE {100 * r.mde:.1f}",
                    _n(r.n),
                    _reading(r.lo, r.hi, positive),
                )
            )
    for tag, source, primary in MAPS:
        m = map_table(figs, tag)
        if m is None:
            continue
        for _, r in m.iterrows():
            if not math.isfinite(r.get("final_mean", math.nan)):
                continue
            head = f"regime `{r.regime}` (warm start: {100 * r.execution_error_rate:.0f} % arithmetic slips)"
            n, plateau_n = int(r.final_n), float(r.get("grpo_last50_seeds", math.nan))
            at = bool(r.get("grpo_plateau", False))
            plateau = "" if at else "; not at plateau"
            if math.isfinite(plateau_n) and int(plateau_n) != n:  # the plateau judged on fewer seeds than the row's
                plateau = f"; {'at' if at else 'not at'} plateau (judged on {int(plateau_n)} of {n} seeds)"
            for endpoint in ("final", "auc"):
                m = r.get(f"{endpoint}_mean", math.nan)
                if not (isinstance(m, float) and math.isfinite(m)):
                    continue
                lo, hi, mde = r[f"{endpoint}_lo"], r[f"{endpoint}_hi"], r[f"{endpoint}_mde"]
                what = f"at step {int(r.steps)}" if endpoint == "final" else "area under the curve"
                out.append(
                    (
                        f"HICRA − GRPO {what}, {head} ({_role(endpoint, primary)})",
                        source,
                        f"{_pts(m, lo, hi)}, MDE {100 * mde:.1f}",
                        _n(r.get(f"{endpoint}_n", n) if math.isfinite(r.get(f"{endpoint}_n", n)) else n),
                        _reading(lo, hi) + (plateau if endpoint == "final" else ""),
                    )
                )
    return out


def _n(n) -> str:
    return f"{int(n)} seeds"


def block(figures_dir="figures") -> str:
    lines = [
        BEGIN,
        "| result (accuracy in points; differences paired by seed) | source | mean [95 % CI] | n | reading |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows(figures_dir)]
    lines += [
        "",
        "Generated from `figures/*.csv` by `python -m hicra.headline`; validation avg@2 on the sandbox's "
        "399 validation tasks.",
        END,
    ]
    return "\n".join(lines)


def rewrite(readme=REPO_ROOT / "README.md", figures_dir="figures") -> bool:
    """Replace the README's headline block; returns whether it changed."""
    text = readme.read_text()
    i, j = text.index(BEGIN), text.index(END) + len(END)
    new = text[:i] + block(figures_dir) + text[j:]
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md's headline block is stale")
    ap.add_argument("--figures_dir", default="figures", help="where the study tables are")
    a = ap.parse_args(argv)
    text = (REPO_ROOT / "README.md").read_text()
    current = text[text.index(BEGIN) : text.index(END) + len(END)]
    try:  # tables that disagree (a map and its per-run table of other regimes): one line, not a traceback
        if a.check:
            sys.exit(0 if current == block(a.figures_dir) else 1)
        print("README.md headline:", "rewritten" if rewrite(figures_dir=a.figures_dir) else "unchanged")
    except ValueError as e:
        ap.error(str(e))


if __name__ == "__main__":
    main()
