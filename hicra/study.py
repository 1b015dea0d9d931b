"""The HICRA study: seeds x methods (and the alpha sweep) as pipeline profiles, and its pre-registered analysis.

    make study                                    # python -m hicra.pipeline --profile study        (~90 min, 2 cores)
    make study SIZE=quick                         # --profile study-quick: grpo, hicra x 2 seeds x 50 steps (~10 min)
    make study-alpha                              # --profile study-alpha: the alpha sweep              (~70 min)
    (the profiles are configs/profiles/study*.yaml; each calls ``study_profile`` with its arms and steps)
    python -m hicra.study --run_dir runs/study    # the analysis alone, on the runs that have finished

Why: the paper's headline (HICRA beats GRPO) has no powered, pre-registered test where planning tokens are
known; the sandbox has them. The plan is docs/study.md's "The study: pre-registered analysis plan"; ``run``
implements it unchanged: final validation accuracy paired by seed against GRPO with 95 % t-intervals,
Holm-adjusted p-values and the minimum detectable effect (MDE); area under the validation curve and steps to
the warm start + 10 points; the alpha sweep's slope; the dynamics behind claims (d) and (e); a claims table.

How: every run is a folder ``runs/<study>/train-<arm>-s<seed>`` written by ``python -m hicra.train`` (an arm
is a method, or ``hicra-a<alpha>`` for the sweep). In the profiles a finished run (its ``summary.json``) is
kept on a rerun whatever changed since; an unfinished one resumes from its newest checkpoint (every 25 steps).
The profiles' last steps run notebooks 03 (Fig 3, Fig 5) and 07 (this analysis, its figures).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys

import pandas as pd
from scipy import stats

from hicra.analysis.study_figures import fig_alpha_sweep, fig_curves, fig_effects, sweep_recipe
from hicra.error_analysis import planning_share_bins
from hicra.method.methods import study_arms
from hicra.method.stats import curve_auc, holm, summarise
from hicra.orchestration.runner import Step
from hicra.runinfo import check_environments, parse_arm, read_run, train_command, write_runs_table
from hicra.stepkit.cli import typed
from hicra.stepkit.plotting import save_figure, setup_style
from hicra.stepkit.steps import StepConfig, emit
from hicra.store.io import read_metrics, read_yaml_mapping, write_json
from hicra.store.paths import resolve

# the primary endpoint, then the secondary ones (docs/study.md's plan); the last is Fig 4's (issue #26)
ENDPOINTS = ("final", "auc", "steps_to_plus10", "planning_share_change")


# --------------------------------------------------------------------------
# profiles: training runs as CLI steps, then the figures


def study_profile(
    run: str = "runs/study",
    arms: dict | None = None,
    steps: int = 100,
    recipe: str = "configs/sandbox.yaml",
    val_every: int | None = None,
    dynamics: bool = True,
    seeds: list | None = None,
    torch_threads: int = 1,
):
    """Pipeline steps in the folder ``run``: one ``python -m hicra.train`` per (arm, seed), then notebooks 03
    (Fig 3 and 5 of this profile's method runs; ``dynamics``) and 07 (the analysis of every finished run there).
    An arm with ``n`` seeds runs the first ``n`` of ``seeds`` (default 0, 1, 2, ...): a replication on fresh
    seeds is ``seeds: [1000, ..., 1009]``. Each run trains with ``torch_threads`` threads (part of the recipe: the
    numbers of record ran with 1). The profiles configs/profiles/study*.yaml call it."""

    arms = study_arms() if arms is None else arms  # the registry's study arms (hicra.method.methods: study_seeds)
    if not (
        isinstance(arms, dict)
        and arms
        and all(isinstance(a, str) and isinstance(n, int) and n >= 1 for a, n in arms.items())
    ):
        raise ValueError(
            f"arms must map arm names to seed counts >= 1, e.g. {{\"grpo\": 3, \"hicra\": 3}}; got {arms!r}"
        )
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
    seeds = seed_list(seeds, max(arms.values()))
    r, train, plain = run.rstrip("/"), [], set()
    for i, seed in enumerate(seeds):  # seed-major: a stopped study has its first seeds complete
        for arm, n in arms.items():
            if i >= n:
                continue
            d = f"{r}/train-{arm}-s{seed}"
            if parse_arm(arm)[1] is None:
                plain.add(d)
            cmd = train_command(recipe, arm, seed, d, steps, val_every=val_every, torch_threads=torch_threads)
            train.append(
                Step(
                    f"train-{arm}-s{seed}",
                    outputs=[f"{d}/summary.json"],
                    needs=(),
                    progress=(f"{d}/metrics.jsonl", steps),
                    command=cmd,
                    keep_done=True,
                )
            )
    runs = [s.outputs[0].rsplit("/", 1)[0] for s in train]
    methods = [d for d in runs if d in plain]  # Fig 3/5: the methods, not the alpha sweep
    tag = r.rstrip("/").rsplit("/", 1)[-1]
    done = tuple(
        s.name for s in train
    )  # the notebooks' code is stamped from their imports (hicra.orchestration.runner.code_files)
    fig35 = Step(
        "03_dynamics",
        notebook="03_dynamics.ipynb",
        params={"run_dir": r, "runs": methods, "tag": tag},
        inputs=[f"{d}/metrics.jsonl" for d in runs],
        outputs=[f"{r}/final_accuracy.csv"],
        needs=done,
    )
    return (
        train
        + [fig35] * dynamics
        + [
            Step(
                "07_study",
                notebook="07_study.ipynb",
                params={"run_dir": r, "tag": tag},
                inputs=[f"{d}/metrics.jsonl" for d in runs],
                outputs=[f"{r}/study.json"],
                needs=done,
            )
        ]
    )


def seed_list(seeds, n: int) -> list[int]:
    """The first ``n`` seeds of ``seeds`` (default ``range(n)``), checked: distinct non-negative integers."""
    if seeds is None:
        return list(range(n))
    if not isinstance(seeds, (list, tuple)) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds
    ):
        raise ValueError(f"seeds must be a list of non-negative integers, e.g. [1000, 1001]; got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct; got {seeds!r}")
    if len(seeds) < n:
        raise ValueError(f"an arm asks for {n} seeds but `seeds` lists {len(seeds)}: {seeds!r}")
    return list(seeds[:n])


# --------------------------------------------------------------------------
# the pre-registered analysis


@dataclasses.dataclass
class StudyConfig(StepConfig):
    run_dir: str = "runs/study"  # holds train-<arm>-s<seed>/ folders
    tag: str | None = None  # figure and table names, <tag>_effects.png ...; default: the run folder's name
    reference: str = "grpo"  # every planned comparison is <arm> - reference, paired by seed
    primary: str = "hicra"  # the arm of the primary comparison
    mixed_environments: bool = False  # pair runs computed in different environments (said, not refused)


STEP_ALPHA = "alpha_step"  # a metrics line's "alpha" in the study's frame, beside the run's "alpha"


def load(run_dir, mixed_environments: bool = False) -> pd.DataFrame:
    """Every finished run's metrics lines with ``arm``, ``method``, ``alpha``, ``seed`` and ``environment``
    columns, all read from the run's ``params.json`` (hicra.runinfo.read_run; never from the folder's name): ``alpha``
    is the run's α, as in ``<tag>_runs.csv`` and the regime tables; a line's own α (the one a step used, which
    ``hicra_adaptive`` changes) is kept as ``alpha_step``. Runs
    from different environments are refused, with what differs, unless ``mixed_environments``."""
    rows, infos = [], {}
    for d in sorted(resolve(run_dir).glob("train-*")):
        if not (d.is_dir() and (d / "summary.json").exists() and (d / "metrics.jsonl").exists()):
            continue
        info = infos[d.name] = read_run(d)
        for rec in read_metrics(d / "metrics.jsonl"):
            rows.append(
                {
                    **{STEP_ALPHA if k == "alpha" else k: v for k, v in rec.items()},
                    "arm": info["arm"],
                    "method": info["method"],
                    "seed": info["seed"],
                    "alpha": info["alpha"],
                    "environment": info["environment_key"],
                    "run": d.name,
                }
            )
    if not rows:
        raise FileNotFoundError(
            f"no finished runs (train-<arm>-s<seed>/summary.json) under {resolve(run_dir)}: run `make study` first"
        )
    check_environments(infos, mixed_environments, f"the runs under {resolve(run_dir)}")
    df = pd.DataFrame(rows)
    if "step" not in df or "val_accuracy" not in df:
        raise ValueError(
            f"the runs under {resolve(run_dir)} have no validation points (metrics lines without step and "
            f"val_accuracy): the study compares validation curves; train with val_every > 0"
        )
    twice = df.groupby(["arm", "seed"]).run.nunique()
    if (twice > 1).any():
        (arm, seed), _ = next((k, v) for k, v in twice.items() if v > 1)
        names = sorted(set(df[(df.arm == arm) & (df.seed == seed)].run))
        raise ValueError(f"{names} are the same arm ({arm}) and seed ({seed}) by their params.json: keep one")
    return df


def per_run(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: final accuracy, AUC, steps to warm + 10 points, and the dynamics of claims (d)/(e)."""
    warm = df[df.step == 0].val_accuracy.mean()
    out = []
    for (arm, seed), g in df.groupby(["arm", "seed"]):
        v = g.dropna(subset=["val_accuracy"]).sort_values("step")
        last = int(g.step.max())
        x, y = v.step.to_numpy(float), v.val_accuracy.to_numpy(float)
        reach = v[v.val_accuracy >= warm + 0.10].step
        t = g[g.step > 0].sort_values("step").set_index("step")
        third = max(5, last // 3)

        def win(col, hi, t=t):  # mean over the 5 steps ending at `hi`
            s = t[col].dropna() if col in t else pd.Series(dtype=float)
            s = s[(s.index > hi - 5) & (s.index <= hi)]
            return float(s.mean()) if len(s) else math.nan

        ppl0, ppl1, ppl2 = win("ppl_execution", 5), win("ppl_execution", third), win("ppl_execution", last)
        out.append(
            {
                "arm": arm,
                "seed": seed,
                "method": g.method.iloc[0],
                "alpha": g.alpha.iloc[0],
                "environment": g.environment.iloc[0] if "environment" in g else None,
                "run": g.run.iloc[0] if "run" in g else f"train-{arm}-s{seed}",
                "steps": last,
                "final": y[-1] if len(y) else math.nan,
                "auc": curve_auc(x, y),
                "steps_to_plus10": float(reach.iloc[0]) if len(reach) else 1.25 * last,
                "reached_plus10": bool(len(reach)),
                "exec_ppl_change_first_third": (ppl1 - ppl0) / ppl0,
                "exec_ppl_change_rest": (ppl2 - ppl1) / ppl1,
                "semantic_entropy_change": win("semantic_entropy", last) - win("semantic_entropy", 5),
            }
        )
    return pd.DataFrame(out)


def with_failure_shares(runs: pd.DataFrame, run_dir, until: int | None = None) -> pd.DataFrame:
    """``runs`` with the Fig 4 endpoint per run (hicra.error_analysis.planning_share_bins: the oracle's planning share
    of failures in the first and last 10 % of steps, and its change; ``until``: each run read up to that step)."""

    rows = [planning_share_bins(resolve(run_dir) / r, until=until) for r in runs.run]
    return pd.concat([runs.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def paired(runs: pd.DataFrame, arm: str, ref: str, col: str) -> pd.Series:
    a, b = (runs[runs.arm == x].set_index("seed")[col] for x in (arm, ref))
    return (a - b).dropna()


def map_dynamics(runs: pd.DataFrame, arm: str) -> dict:
    """A regime map's per-regime summaries that are not HICRA - GRPO comparisons, from its per-run table: the plateau
    check (GRPO's ``last50``, paired over seeds; at plateau if its interval holds 0) and each arm's semantic-entropy
    change (``arm``: the map's HICRA arm), in the map table's columns and order; a part whose column ``runs`` lacks
    is left out."""
    out = {}
    if "last50" in runs:
        p = summarise(runs[runs.arm == "grpo"].last50)
        out |= {"grpo_last50": p["mean"], "grpo_last50_lo": p["lo"], "grpo_last50_hi": p["hi"]}
        out["grpo_plateau"] = bool(math.isfinite(p["lo"]) and p["lo"] <= 0 <= p["hi"])
        out["grpo_last50_seeds"] = p["n"]  # the n of each summary (a headline row says a smaller one)
    if "semantic_entropy_change" in runs:
        ent = {a: summarise(runs[runs.arm == b].semantic_entropy_change) for a, b in (("grpo", "grpo"), ("hicra", arm))}
        out["sem_entropy_change_seeds"] = ent["grpo"]["n"]
        for key, suffix in (("mean", ""), ("lo", "_lo"), ("hi", "_hi")):
            out |= {f"sem_entropy_change_{a}{suffix}": ent[a][key] for a in ent}
    return out


def comparisons(runs: pd.DataFrame, ref: str = "grpo") -> pd.DataFrame:
    """Every arm against ``ref``, paired by seed, for the primary and the two secondary endpoints."""
    rows = []
    for endpoint in ENDPOINTS:
        if endpoint not in runs:
            continue
        for arm in sorted(set(runs.arm) - {ref}, key=lambda a: (a.startswith("hicra-a"), a)):
            d = paired(runs, arm, ref, endpoint)
            rows.append(
                {
                    "endpoint": endpoint,
                    "comparison": f"{arm} - {ref}",
                    "arm": arm,
                    **summarise(d),
                    "per_seed": " ".join(f"{x:+.3f}" for x in d),
                }
            )
    out = pd.DataFrame(rows)
    if len(out):
        main = (out.endpoint == "final") & ~out.arm.str.startswith("hicra-a")  # the planned method list
        out.loc[main, "p_holm"] = holm(out.loc[main, "p"].tolist())
    return out


def alpha_slope(runs: pd.DataFrame) -> dict:
    """Least-squares slope of final accuracy on alpha over every (alpha, seed) point, with a 95 % interval.

    As pre-registered, only the seeds run at every alpha enter (0-4 in the shipped design): the study's extra
    GRPO and HICRA seeds (alpha 0 and 0.2) would otherwise weigh those two alphas double."""

    pts = runs[runs.method.isin(["grpo", "hicra"])].dropna(subset=["alpha", "final"])
    common = set.intersection(*[set(g.seed) for _, g in pts.groupby("alpha")]) if len(pts) else set()
    pts = pts[pts.seed.isin(common)]
    if pts.alpha.nunique() < 3:
        return {"n": len(pts), "slope": math.nan, "lo": math.nan, "hi": math.nan}
    r = stats.linregress(pts.alpha, pts.final)
    h = stats.t.ppf(0.975, len(pts) - 2) * r.stderr
    return {
        "n": len(pts),
        "alphas": sorted(pts.alpha.unique().tolist()),
        "seeds": sorted(common),
        "slope": r.slope,
        "lo": r.slope - h,
        "hi": r.slope + h,
        "p": r.pvalue,
    }


def _verdict(lo, hi, positive: bool = True) -> str:
    """The plan's rule: the claimed sign holds if the interval excludes 0 on its side, fails if it excludes 0
    on the other side, and is inconclusive otherwise."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    good, bad = (lo > 0, hi < 0) if positive else (hi < 0, lo > 0)
    return "reproduced" if good else "not reproduced" if bad else "inconclusive"


def _worded(lo, hi, positive: bool = True, failed: str = "not reproduced") -> str:
    """``_verdict`` with the words a claim gives its failure (e.g. "not reproduced (GRPO better)")."""
    v = _verdict(lo, hi, positive)
    return failed if v == "not reproduced" else v


def _combined(*verdicts: str) -> str:
    """A claim with several parts: reproduced if every part is, not reproduced if any part is not, else
    inconclusive."""
    if all(v == "reproduced" for v in verdicts):
        return "reproduced"
    return "not reproduced" if "not reproduced" in verdicts else "inconclusive"


def claims(runs: pd.DataFrame, comp: pd.DataFrame, ref: str, primary: str) -> list[dict]:
    """Claims (c), (d), (e) with the decision rules of docs/study.md's plan."""
    pct = lambda s: f"{100 * s['mean']:+.1f} [{100 * s['lo']:+.1f}, {100 * s['hi']:+.1f}] points"  # noqa: E731
    out = []
    prim = comp[(comp.endpoint == "final") & (comp.arm == primary)]
    if len(prim):
        s = prim.iloc[0]
        v = _worded(s["lo"], s["hi"], failed="not reproduced (GRPO better)")
        out.append(
            {
                "claim": "(c) HICRA (alpha 0.2) beats GRPO",
                "verdict": v,
                "result": f"{primary} - {ref}, step-{int(runs.steps.max())} accuracy: {pct(s)}, {int(s['n'])} "
                f"seeds, MDE {100 * s['mde']:.1f} points",
            }
        )
    for arm in (ref, primary):
        r = runs[runs.arm == arm]
        if len(r) < 2:
            continue
        p1, se = summarise(r.exec_ppl_change_first_third), summarise(r.semantic_entropy_change)
        v = _combined(_verdict(p1["lo"], p1["hi"], positive=False), _verdict(se["lo"], se["hi"]))
        out.append(
            {
                "claim": f"(d) two phases ({arm})",
                "verdict": v,
                "result": f"execution perplexity over the first third {100 * p1['mean']:+.1f} % "
                f"[{100 * p1['lo']:+.1f}, {100 * p1['hi']:+.1f}]; semantic entropy over the run "
                f"{se['mean']:+.2f} [{se['lo']:+.2f}, {se['hi']:+.2f}] bits ({int(se['n'])} seeds)",
            }
        )
    if "planning_share_change" in runs:
        ch = {a: summarise(runs[runs.arm == a].planning_share_change) for a in (ref, primary)}
        d4 = summarise(paired(runs, primary, ref, "planning_share_change"))
        if d4["n"] >= 2:
            v = _worded(d4["lo"], d4["hi"], positive=False, failed="not reproduced (falls faster under GRPO)")
            share = lambda s: f"{s['mean']:+.3f} [{s['lo']:+.3f}, {s['hi']:+.3f}]"  # noqa: E731
            out.append(
                {
                    "claim": "(Fig 4) planning errors fall faster under HICRA",
                    "verdict": v,
                    "result": f"change of the planning share of failures, first to last 10 % of steps (oracle): "
                    f"{ref} {share(ch[ref])}, {primary} {share(ch[primary])}; {primary} - {ref} "
                    f"{share(d4)} ({int(d4['n'])} seeds, MDE {d4['mde']:.3f})",
                }
            )
    d = summarise(paired(runs, primary, ref, "semantic_entropy_change"))
    if len(prim) and d["n"] >= 2:
        s = prim.iloc[0]
        v = _combined(_verdict(d["lo"], d["hi"]), _verdict(s["lo"], s["hi"]))
        out.append(
            {
                "claim": "(e) the method that keeps semantic entropy higher gains accuracy",
                "verdict": v,
                "result": f"{primary} - {ref}: semantic-entropy change {d['mean']:+.2f} [{d['lo']:+.2f}, "
                f"{d['hi']:+.2f}] bits; accuracy {pct(s)}",
            }
        )
    return out


def run(cfg: StudyConfig) -> dict:
    """The analysis behind notebook 07 and ``python -m hicra.study``: tables, figures, the claims table."""

    setup_style()
    tag = cfg.tag or resolve(cfg.run_dir).name  # runs/study-replication -> study-replication_*: no other study's files
    df = load(cfg.run_dir, cfg.mixed_environments)
    runs = with_failure_shares(per_run(df), cfg.run_dir)
    comp = comparisons(runs, cfg.reference)
    arms = runs.groupby("arm").agg(seeds=("seed", "nunique"), steps=("steps", "max")).reset_index()
    for col in ENDPOINTS:
        s = [summarise(runs[runs.arm == a][col]) for a in arms.arm]  # the mean, with a one-sample t-interval
        arms[col], arms[f"{col}_lo"], arms[f"{col}_hi"] = (
            [x["mean"] for x in s],
            [x["lo"] for x in s],
            [x["hi"] for x in s],
        )
    arms["reached_plus10"] = [int(runs[runs.arm == a].reached_plus10.sum()) for a in arms.arm]
    warm = float(df[df.step == 0].val_accuracy.mean())
    slope = alpha_slope(runs)
    cl = claims(runs, comp, cfg.reference, cfg.primary)
    figs = resolve(cfg.figures_dir)
    figs.mkdir(parents=True, exist_ok=True)
    runs.to_csv(resolve(cfg.run_dir) / "study_runs.csv", index=False)
    write_runs_table(runs, figs / f"{tag}_runs.csv")
    arms.to_csv(figs / f"{tag}_arms.csv", index=False)
    comp.to_csv(figs / f"{tag}_comparisons.csv", index=False)
    (figs / f"{tag}_claims.md").write_text(claims_markdown(cl, warm, slope))

    paths = [
        save_figure(fig_curves(df), f"{tag}_curves", cfg.figures_dir),
        save_figure(fig_effects(comp, cfg.reference), f"{tag}_effects", cfg.figures_dir),
    ]
    if math.isfinite(slope["slope"]):
        on = runs.method.isin(["grpo", "hicra"]) & runs.alpha.notna() & runs.seed.isin(slope.get("seeds") or [])
        recipe = sweep_recipe(cfg.run_dir, runs[on])
        paths.append(save_figure(fig_alpha_sweep(runs, slope, recipe), f"{tag}_alpha_sweep", cfg.figures_dir))
    summary = {
        "run_dir": str(resolve(cfg.run_dir)),
        "tag": tag,
        "runs": len(runs),
        "warm_start": warm,
        "arms": {a: int(n) for a, n in zip(arms.arm, arms.seeds)},
        "primary": comp[(comp.endpoint == "final") & (comp.arm == cfg.primary)].to_dict("records"),
        "alpha_slope": slope,
        "claims": cl,
        "figures": [str(p[0]) for p in paths],
    }
    write_json(resolve(cfg.run_dir) / "study.json", summary)
    return summary


def claims_markdown(cl: list[dict], warm: float, slope: dict) -> str:
    lines = ["| paper claim | this project's result (95 % CI) | verdict |", "|---|---|---|"]
    lines += [f"| {c['claim']} | {c['result']} | **{c['verdict']}** |" for c in cl]
    lines += ["", f"Warm start (step 0): {warm:.3f}."]
    if math.isfinite(slope["slope"]):
        lines.append(
            f"Alpha sweep ({', '.join(f'{a:g}' for a in slope['alphas'])}; {slope['n']} runs): slope of "
            f"final accuracy on alpha {slope['slope']:+.3f} [{slope['lo']:+.3f}, {slope['hi']:+.3f}] per "
            f"unit alpha."
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", help="optional YAML of StudyConfig fields; flags override it")
    for f in dataclasses.fields(StudyConfig):
        ap.add_argument(f"--{f.name}", default=None, help=f"default {f.default}")
    a = vars(ap.parse_args(argv))
    path = a.pop("config")

    try:  # a config, folder or metrics file a user can fix: one line, not a traceback
        cfg = {**(read_yaml_mapping(path) if path else {}), **{k: v for k, v in a.items() if v is not None}}
        unknown = sorted(set(cfg) - {f.name for f in dataclasses.fields(StudyConfig)})
        if unknown:
            raise ValueError(f"{path}: unknown StudyConfig key(s) {unknown}")
        emit(run(StudyConfig(**typed(StudyConfig, cfg))))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
