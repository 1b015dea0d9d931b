"""How the 8-seed result of the strategy regime to step 600 (docs/study.md) was computed, kept for provenance.

Why this and not ``python -m hicra.regimes``: the project's machines keep only the repository between sessions,
so the 16 runs never lay on one machine. Seeds 2000-2005 were trained in one session and their per-seed
HICRA - GRPO values committed (``figures/archive/regimes-long-interim_comparisons.csv``, 3 decimals, and the 6-seed
plateau and semantic-entropy summaries in ``figures/archive/regimes-long-interim_map.csv``); seeds 2006-2007 in the next,
from the same warm start (shipped in data/sandbox/). A seed given again (a run without the resume defect) may be
passed too. With all 16 runs in one folder, ``python -m hicra.regimes --run_dir runs/regimes-long`` gives the
same endpoints from the runs.

How: the new runs go through the study's own per-run code (``hicra.study.per_run``, ``with_failure_shares``,
``paired``); a seed trained again replaces its committed value (the committed one is kept as a sensitivity
line; ``--without`` adds lines without a seed); ``hicra.method.stats.summarise`` gives mean, 95 % t-interval, p and MDE.
GRPO's plateau and semantic entropy have no committed per-seed values: the map row keeps the 6-seed summaries
and lists the new runs' own values beside them.

    python scripts/regimes_long_8seeds.py runs/regimes-long [--figures_dir figures] [--without 2005]
"""

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from hicra.stepkit.plotting import save_figure, setup_style
from hicra.method.stats import summarise
from hicra.study import load, paired, per_run, with_failure_shares

ENDPOINTS = {"final": "final", "auc": "auc", "planning_share_change": "fig4"}


def new_runs(run_dirs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Metrics lines and per-run rows (Fig 4 bins included) of every finished strategy run in ``run_dirs``."""
    dfs, runs = [], []
    for r in run_dirs:
        d = Path(r) / "strategy"
        df = load(d)
        dfs.append(df)
        runs.append(with_failure_shares(per_run(df), d))
    return pd.concat(dfs, ignore_index=True), pd.concat(runs, ignore_index=True)


def fig_effects(comp: pd.DataFrame):
    """Per endpoint: each seed's HICRA - GRPO (points) and the mean with its 95 % t-interval, per variant line."""
    import matplotlib.pyplot as plt

    setup_style()
    titles = {
        "final": "accuracy at step 600 (primary)",
        "auc": "area under the curve",
        "planning_share_change": "Fig 4: planning share of failures,\nlast − first 10 % of steps",
    }
    fig, axes = plt.subplots(1, 3, figsize=(17, 2.6 + 0.5 * comp.seeds.nunique()), squeeze=False, sharey=True)
    for ax, (e, title) in zip(axes[0], titles.items()):
        t = comp[comp.endpoint == e].reset_index(drop=True)
        for i, r in t.iterrows():
            y = len(t) - 1 - i
            pts = [100 * float(x) for x in r.per_seed.split()]
            ax.plot(pts, [y + 0.18] * len(pts), "o", color="0.55", ms=5, alpha=0.8)
            ax.errorbar(
                100 * r["mean"],
                y,
                xerr=[[100 * (r["mean"] - r.lo)], [100 * (r.hi - r["mean"])]],
                fmt="o",
                capsize=5,
                lw=2,
                color="#d62728",
            )
            ax.annotate(
                f"MDE {100 * r.mde:.1f}", (100 * r.hi, y), textcoords="offset points", xytext=(6, -4), fontsize=9
            )
        ax.axvline(0, color="0.3", lw=1, ls="--")
        ax.margins(x=0.18)
        ax.set_yticks(range(len(t)), list(t.seeds)[::-1])
        ax.set_ylim(-0.6, len(t) - 0.3)
        ax.set(xlabel="HICRA − GRPO (points)", title=title)
    fig.suptitle(
        "Strategy regime at step 600: HICRA − GRPO paired by seed (grey: each seed; red: mean, 95 % t-interval)", y=1.02
    )
    fig.tight_layout()
    return fig


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dirs", nargs="+", help="folders holding strategy/train-<arm>-s<seed> of the new runs")
    ap.add_argument("--figures_dir", default="figures")
    ap.add_argument("--without", type=int, nargs="*", default=[2005], help="seeds left out in a sensitivity line")
    a = ap.parse_args(argv)
    figs = Path(a.figures_dir)
    old = pd.read_csv(figs / "archive" / "regimes-long-interim_comparisons.csv")
    row = pd.read_csv(figs / "archive" / "regimes-long-interim_map.csv").iloc[0].to_dict()
    old_seeds = list(range(2000, 2000 + int(row["seeds"])))
    df, runs = new_runs(a.run_dirs)
    assert (runs.steps == 600).all(), "every new run must have reached step 600"
    assert not runs.duplicated(["arm", "seed"]).any(), "a seed's run is in two of the folders"
    seeds = sorted(set(runs[runs.arm == "grpo"].seed) & set(runs[runs.arm == "hicra"].seed))
    rerun = [s for s in seeds if s in old_seeds]
    out, comp = dict(row), []
    for endpoint, col in ENDPOINTS.items():
        prev = old[(old.endpoint == endpoint) & (old.arm == "hicra")].iloc[0]
        committed = dict(zip(old_seeds, (float(x) for x in prev.per_seed.split())))
        fresh = paired(runs, "hicra", "grpo", endpoint).loc[seeds].to_dict()
        primary = {**committed, **fresh}  # a seed trained again replaces its committed value
        variants = [("8 seeds", primary)]
        for s in rerun:
            variants.append((f"8 seeds, {s} as committed (resumed)", {**primary, s: committed[s]}))
        for s in a.without:
            variants.append((f"7 seeds, without {s}", {k: v for k, v in primary.items() if k != s}))
        for label, vals in variants:
            vals = dict(sorted(vals.items()))
            s = summarise(list(vals.values()))
            comp.append(
                {
                    "endpoint": endpoint,
                    "comparison": "hicra - grpo",
                    "seeds": label,
                    **s,
                    "per_seed": " ".join(f"{v:+.3f}" for v in vals.values()),
                }
            )
            if label == "8 seeds":
                keys = ("n", "mean", "lo", "hi", "mde") if col == "final" else ("mean", "lo", "hi", "mde")
                out.update({f"{col}_{k}": s[k] for k in keys if not (col == "fig4" and k == "mde")})
                if col == "final":
                    out["hicra_minus_grpo_per_seed"] = comp[-1]["per_seed"]
    g = (
        df[df.arm == "grpo"]
        .dropna(subset=["val_accuracy"])
        .pivot_table(index="seed", columns="step", values="val_accuracy")
    )
    added = [s for s in seeds if s not in old_seeds]
    n0 = len(old_seeds)
    by_seed = runs.sort_values("seed")
    out.update(
        {
            "seeds": len(set(old_seeds) | set(seeds)),
            "new_runs_seeds": " ".join(map(str, seeds)),
            **{  # an arm's mean: the committed 6-seed mean with the added seeds (a re-run seed is not in it twice)
                f"{arm}_final": (n0 * row[f"{arm}_final"] + runs[(runs.arm == arm) & runs.seed.isin(added)].final.sum())
                / (n0 + len(added))
                for arm in ("grpo", "hicra")
            },
            **{
                f"{arm}_final_new_runs": " ".join(f"{x:.3f}" for x in by_seed[by_seed.arm == arm].final)
                for arm in ("grpo", "hicra")
            },
            "grpo_last50_seeds": n0,
            "grpo_last50_new_runs": " ".join(f"{x:+.3f}" for x in (g[600] - g[550]).tolist()),
            "sem_entropy_change_seeds": n0,
            **{
                f"sem_entropy_change_{arm}_new_runs": " ".join(
                    f"{x:+.3f}" for x in by_seed[by_seed.arm == arm].semantic_entropy_change
                )
                for arm in ("grpo", "hicra")
            },
        }
    )
    pd.DataFrame([out]).to_csv(figs / "regimes-long_map.csv", index=False)
    pd.DataFrame(comp).to_csv(figs / "regimes-long_comparisons.csv", index=False)
    save_figure(fig_effects(pd.DataFrame(comp)), "regimes-long_effects", figs)
    print(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}, default=str))


if __name__ == "__main__":
    main()
