"""The regime map (issue #26): does HICRA beat GRPO where planning, not execution, is the bottleneck?

The paper's mechanism is that HICRA helps *after* execution has consolidated, when strategy limits accuracy.
In sandbox v2 RL removes planning failures first and what is left is arithmetic, so the study tests HICRA in one
regime only. This module builds worlds whose warm starts sit at different points of that axis, measures each warm
start's anatomy (execution error rate, planning error rate, careful-search share), trains GRPO and HICRA with the
same recipe in each, and puts HICRA - GRPO (paired by seed, 95 % t-interval) against the warm start's execution
error rate. The regimes are fixed a priori (docs/study.md, "The regime map: pre-registered plan"):

    strategy   execution consolidated, strategy the bottleneck: twice the SFT steps (6,000), careful searches
               rare in the warm-start traces (p_careful 0.25) and no deduction hints (p_hint 0)
    v2         today's sandbox (the study's world)
    execution  execution-limited: the same world with one token per digit (split_digits), so sums are multi-token

    make regimes                   # python -m hicra.pipeline --profile regimes        (resumable; see README)
    make regimes SIZE=quick        # --profile regimes-quick: 1 seed x 100 steps a regime (a look, not a result)
    make regimes-long              # --profile regimes-long: the strategy regime's runs continued to step 600
    make regimes-long FROM=scratch # --profile regimes-long-scratch: the same runs trained 0 -> 600 in one go
    python -m hicra.regimes --run_dir runs/regimes            # the analysis alone, on the finished runs
    python -m hicra.regimes --run_dir runs/regimes-long --until 300 --tag regimes-long-at300   # an earlier horizon
    python -m hicra.regimes --warm_start strategy --out F     # build one regime's warm start, write its anatomy
    python -m hicra.runinfo compare figures/regimes_map.csv figures/<rerun>_map.csv   # a re-run vs the record

How: one folder per regime under the run folder, each a study (``train-<arm>-s<seed>/``, ``hicra.study``'s
endpoints, the Fig 4 endpoint included), beside ``warm_start.json`` (the build and its anatomy).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys

import matplotlib.pyplot as plt
import pandas as pd

from hicra.orchestration.runner import Step
from hicra.runinfo import check_environments, hicra_arm, read_run, train_command, write_runs_table
from hicra.sandbox.anatomy import anatomy, summarize
from hicra.sandbox.build import SandboxConfig, build, load
from hicra.stepkit.cli import from_dict
from hicra.stepkit.plotting import PALETTE, save_figure, setup_style
from hicra.stepkit.steps import emit, install_signal_handlers
from hicra.store.io import write_json
from hicra.store.paths import resolve
from hicra.study import comparisons, map_dynamics, paired, per_run, seed_list, with_failure_shares
from hicra.study import load as load_study

REGIMES = {
    "strategy": {"sft_steps": 6000, "world": {"p_careful": 0.25, "p_hint": 0.0}},
    "v2": {},
    "execution": {"split_digits": True},
}


# --------------------------------------------------------------------------
# profile: per regime a warm start, then GRPO and HICRA runs, then the map


def regimes_profile(
    run: str = "runs/regimes",
    regimes: list | None = None,
    arms: dict | None = None,
    steps: int = 300,
    seeds: list | None = None,
    val_every: int = 25,
    recipe: str = "configs/sandbox.yaml",
    start_from: str | None = None,
    torch_threads: int = 1,
):
    """Pipeline steps: ``warm-<regime>`` (build + anatomy), ``<regime>/train-<arm>-s<seed>`` and ``map``. With
    ``start_from`` (an earlier map's folder), ``copy-<regime>`` first copies that map's runs of the regime into
    ``run`` (``continue_runs``), so each run continues from its last checkpoint to ``steps``; the source is kept.
    Every run's command comes from hicra.runinfo.train_command (arms as in the study: ``hicra-a0.1`` is α 0.1) and
    trains with ``torch_threads`` threads (the map of record ran with 1)."""

    names = list(REGIMES) if regimes is None else regimes
    unknown = sorted(set(names) - set(REGIMES))
    if unknown:
        raise ValueError(f"unknown regime(s) {unknown}; defined: {list(REGIMES)}")
    arms = arms or {"grpo": 8, "hicra": 8}
    seeds = seed_list(seeds if seeds is not None else [2000 + i for i in range(max(arms.values()))], max(arms.values()))
    r, out, trains = run.rstrip("/"), [], []
    for name in names:
        warm = f"{r}/{name}/warm_start.json"
        out.append(
            Step(
                f"warm-{name}",
                outputs=[warm],
                needs=(),
                keep_done=True,
                command=["python", "-m", "hicra.regimes", "--warm_start", name, "--out", warm],
            )
        )
        if start_from:
            src = start_from.rstrip("/")
            out.append(
                Step(
                    f"copy-{name}",
                    outputs=[f"{r}/{name}/continued.json"],
                    needs=(),
                    keep_done=True,
                    command=[
                        "python",
                        "-m",
                        "hicra.regimes",
                        "--continue_from",
                        f"{src}/{name}",
                        "--out",
                        f"{r}/{name}",
                    ],
                )
            )
    before = ("copy-", "warm-") if start_from else ("warm-",)
    for i, seed in enumerate(seeds):  # seed-major: a stopped map has its first seeds complete in every regime
        for name in names:
            for arm, n in arms.items():
                if i >= n:
                    continue
                d = f"{r}/{name}/train-{arm}-s{seed}"
                cmd = train_command(
                    recipe, arm, seed, d, steps, val_every, val_every, REGIMES[name], torch_threads=torch_threads
                )
                trains.append(
                    Step(
                        f"{name}-train-{arm}-s{seed}",
                        outputs=[f"{d}/summary.json"],
                        needs=tuple(f"{b}{name}" for b in before),
                        progress=(f"{d}/metrics.jsonl", steps),
                        command=cmd,
                        keep_done=True,
                    )
                )
    done = tuple(s.name for s in trains)
    return (
        out
        + trains
        + [
            Step(
                "map",
                outputs=[f"{r}/regimes.json"],
                needs=done,
                command=["python", "-m", "hicra.regimes", "--run_dir", r],
            )
        ]
    )


def warm_start(name: str, out: str, n: int = 399, k: int = 2) -> dict:
    """Build (or reuse) the regime's warm start and write its anatomy: accuracy, the share of sampled completions
    that fail by a wrong written arithmetic step (``execution_error_rate``) or otherwise (``planning_error_rate``),
    the careful-search share. On the validation tasks, T = 1, ``k`` samples a task."""

    cfg = from_dict(SandboxConfig, REGIMES[name])
    info = build(cfg)
    model, tok = load(info["model_dir"])
    s = summarize(anatomy(model, tok, cfg.world_config(), n=n, k=k, max_new_tokens=cfg.max_new_tokens))
    fails = s.pop("failures")
    res = {
        "regime": name,
        "sandbox": REGIMES[name],
        "model_dir": info["model_dir"],
        "build_seconds": info.get("build_seconds"),
        **s,
        "execution_error_rate": fails.get("execution", 0) / s["n"],
        "planning_error_rate": fails.get("planning", 0) / s["n"],
    }
    write_json(resolve(out), res)
    return res


# --------------------------------------------------------------------------
# the map: each regime's study endpoints against its warm start's execution error rate


def analyse(run_dir, until: int | None = None, mixed_environments: bool = False) -> dict:
    """Per regime: warm-start anatomy, HICRA - GRPO at the last step and in AUC (paired, CI, MDE), the Fig 4
    endpoint, semantic entropy per arm (does it rise anywhere: phase 2?), and whether GRPO's curve has reached
    its plateau (last validation point minus the one 50 steps before, paired over seeds: a CI that includes 0).
    ``until``: every run read as if it had stopped at that step (a longer map seen at an earlier horizon, e.g.
    the 600-step runs at step 300, which must reproduce the 300-step map). The map compares regimes, so every run
    of every regime must share one environment (refused, with what differs, unless ``mixed_environments``)."""

    root, rows, tables = resolve(run_dir), [], []
    if until is not None and until < 0:
        raise ValueError(f"--until must be a step >= 0; got {until}")
    if not any((root / name / "warm_start.json").exists() for name in REGIMES):
        raise FileNotFoundError(
            f"no regime folders ({', '.join(REGIMES)}, each with warm_start.json) under {root}: run the "
            f"regimes profile first (python -m hicra.pipeline --profile regimes), or pass its --run_dir"
        )
    finished = sorted(p.parent for p in root.glob("*/train-*/summary.json") if p.parent.parent.name in REGIMES)
    check_environments(
        {f"{d.parent.name}/{d.name}": read_run(d) for d in finished}, mixed_environments, f"the map's runs in {root}"
    )
    for name in REGIMES:
        d = root / name
        if not (d / "warm_start.json").exists():
            continue
        warm = json.loads((d / "warm_start.json").read_text())
        try:
            df = load_study(d, mixed_environments=True)  # checked across the whole map above
        except FileNotFoundError:
            rows.append({"regime": name, **_warm(warm)})
            continue
        if until is not None:
            df = df[df.step <= until]
        runs = with_failure_shares(per_run(df), d, until)
        # the plateau check per run: accuracy at the last step minus at the last validation 50 or more steps before
        acc = df.dropna(subset=["val_accuracy"]).pivot_table(
            index=["arm", "seed"], columns="step", values="val_accuracy"
        )
        steps = sorted(acc.columns)
        back = [s for s in steps if s <= steps[-1] - 50] if steps else []
        last50 = (acc[steps[-1]] - acc[back[-1]]) if back else pd.Series(math.nan, index=acc.index)
        runs = runs.merge(last50.rename("last50").reset_index(), on=["arm", "seed"], how="left")
        tables.append(runs.assign(regime=name))
        comp = comparisons(runs)
        arm = hicra_arm(runs.arm)  # `hicra`, or the one α arm a map ran (hicra-a0.1)
        hicra = comp[comp.arm == arm].set_index("endpoint") if len(comp) else pd.DataFrame()
        pick = {
            e: hicra.loc[e].to_dict() if e in hicra.index else {} for e in ("final", "auc", "planning_share_change")
        }
        rows.append(
            {
                "regime": name,
                **_warm(warm),
                "seeds": int(runs.seed.nunique()),
                "steps": int(runs.steps.max()),
                "grpo_final": float(runs[runs.arm == "grpo"].final.mean()),
                "hicra_arm": arm,
                "hicra_final": float(runs[runs.arm == arm].final.mean()),
                **{f"final_{k}": pick["final"].get(k, math.nan) for k in ("n", "mean", "lo", "hi", "mde")},
                **{f"auc_{k}": pick["auc"].get(k, math.nan) for k in ("n", "mean", "lo", "hi", "mde")},
                **{f"fig4_{k}": pick["planning_share_change"].get(k, math.nan) for k in ("mean", "lo", "hi")},
                **map_dynamics(runs, arm),  # the plateau check, each arm's semantic-entropy change
                "hicra_minus_grpo_per_seed": " ".join(f"{x:+.3f}" for x in paired(runs, arm, "grpo", "final")),
            }
        )
    return {"run_dir": str(root), "regimes": rows, "runs": pd.concat(tables, ignore_index=True) if tables else None}


def continue_runs(src, dst) -> dict:
    """Copy the run folders (``train-*``) and ``warm_start.json`` of ``src`` into ``dst``, each that ``dst`` lacks
    (whole: copied beside, then renamed), and write ``dst/continued.json`` naming the source; ``src`` is untouched.
    A run resumed from the copy with a larger ``--max_steps`` continues from its newest complete checkpoint. The
    copy's ``summary.json`` (the source's last step) is kept as ``summary-at-<step>.json``: a copy is a run to
    continue, not a finished one, so the pipeline's training step (done once ``summary.json`` exists) runs it. A
    copy already in ``dst`` whose ``summary.json`` is byte for byte its source's (left by a copy that kept it, before
    2026-12-07) is set aside the same way and named under ``set_aside``; a continued run's own summary differs."""

    src, dst = resolve(src), resolve(dst)
    runs = sorted(p for p in src.glob("train-*") if (p / "summary.json").exists())
    if not runs:
        raise FileNotFoundError(
            f"{src} has no finished run (train-*/summary.json) to continue: run `make regimes` first, or train the "
            "same runs from step 0 with `make regimes-long FROM=scratch`"
        )
    dst.mkdir(parents=True, exist_ok=True)
    copied, set_aside = [], []
    for p in runs:
        if (dst / p.name).exists():
            kept = dst / p.name / "summary.json"
            if kept.exists() and kept.read_bytes() == (p / "summary.json").read_bytes():  # the source's, not its own
                _set_summary_aside(dst / p.name)
                set_aside.append(p.name)
            continue
        tmp = dst / f".{p.name}.copying"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(p, tmp, ignore=shutil.ignore_patterns("*.lock"))
        _set_summary_aside(tmp)
        tmp.rename(dst / p.name)
        copied.append(p.name)
    if (src / "warm_start.json").exists() and not (dst / "warm_start.json").exists():
        shutil.copy2(src / "warm_start.json", dst / "warm_start.json")
    res = {"source": str(src), "runs": [p.name for p in runs], "copied": copied, "set_aside": set_aside}
    write_json(dst / "continued.json", res)
    return res


def _set_summary_aside(run_dir) -> None:
    """``summary.json`` renamed ``summary-at-<its step>.json``: the run is one to continue, its last summary kept."""
    steps = json.loads((run_dir / "summary.json").read_text()).get("steps", "unknown")
    (run_dir / "summary.json").rename(run_dir / f"summary-at-{steps}.json")


def _warm(w: dict) -> dict:
    return {
        k: w.get(k) for k in ("accuracy", "execution_error_rate", "planning_error_rate", "careful_share", "tokens_mean")
    }


def fig_map(rows: list[dict]):
    """HICRA - GRPO (points; at the last step and as AUC) against the warm start's execution error rate, and each
    arm's semantic-entropy change over the run (phase 2 where it rises)."""

    t = pd.DataFrame([r for r in rows if "final_mean" in r])
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8), squeeze=False)
    xmax = 100 * float(t.execution_error_rate.max()) + 14
    for ax, (e, title) in zip(axes[0], (("final", "accuracy at the last step"), ("auc", "area under the curve"))):
        for _, r in t.iterrows():
            x, m = 100 * r.execution_error_rate, 100 * r[f"{e}_mean"]
            _point(ax, x, m, 100 * r[f"{e}_lo"], 100 * r[f"{e}_hi"], PALETTE["hicra"])
            note = "" if e != "final" or r.get("grpo_plateau", True) else ", not at plateau"
            ax.annotate(
                f"{r.regime} (n={int(r.final_n)}{note})",
                (x, m),
                textcoords="offset points",
                xytext=(9, -4),
                fontsize=10,
            )
        ax.axhline(0, color="0.3", lw=1, ls="--")
        ax.set_xlim(0, xmax)
        ax.set(
            xlabel="warm start: completions with an arithmetic slip (%)",
            ylabel="HICRA − GRPO (points)",
            title=f"HICRA − GRPO, {title}",
        )
    ax = axes[0][2]
    for k, arm in enumerate(("grpo", "hicra")):
        if f"sem_entropy_change_{arm}" not in t:
            continue
        for i, r in t.iterrows():
            x, m = 100 * r.execution_error_rate + (k - 0.5) * 1.2, r[f"sem_entropy_change_{arm}"]
            _point(
                ax,
                x,
                m,
                r.get(f"sem_entropy_change_{arm}_lo"),
                r.get(f"sem_entropy_change_{arm}_hi"),
                PALETTE[arm],
                label=arm.upper() if i == t.index[0] else None,
            )
            if k == 1:
                ax.annotate(r.regime, (x, m), textcoords="offset points", xytext=(9, -4), fontsize=10)
    ax.axhline(0, color="0.3", lw=1, ls="--")
    ax.set_xlim(0, xmax)
    ax.legend(loc="best", fontsize=9)
    ax.set(
        xlabel="warm start: completions with an arithmetic slip (%)",
        ylabel="change over the run (bits)",
        title="semantic entropy (phase 2 where it rises)",
    )
    fig.suptitle(
        "Regime map: HICRA's effect against how execution-limited the warm start is (paired by seed, "
        "95 % t-intervals; hollow: one seed, no interval)",
        y=1.02,
    )
    fig.tight_layout()
    return fig


def _point(ax, x, m, lo, hi, colour, label=None):
    """A mean with its interval, or a hollow point where there is none (one seed)."""
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        ax.errorbar(x, m, yerr=[[m - lo], [hi - m]], fmt="o", capsize=5, lw=2, color=colour, label=label)
    else:
        ax.plot(x, m, "o", color=colour, mfc="white", mew=2, label=label)


def run(
    run_dir: str,
    figures_dir: str = "figures",
    tag: str = "regimes",
    until: int | None = None,
    mixed_environments: bool = False,
) -> dict:
    """The map's table ``<tag>_map.csv``, its per-run table ``<tag>_runs.csv`` (every run's endpoints, the regime
    first) and figure, and ``regimes.json`` in the run folder."""
    setup_style()
    res = analyse(run_dir, until, mixed_environments)
    per_run = res.pop("runs")
    t = pd.DataFrame(res["regimes"])
    figs = resolve(figures_dir)
    figs.mkdir(parents=True, exist_ok=True)
    t.to_csv(figs / f"{tag}_map.csv", index=False)
    if per_run is not None:
        write_runs_table(per_run, figs / f"{tag}_runs.csv", first=("regime",))
    if "final_mean" in t:
        res["figures"] = [str(save_figure(fig_map(res["regimes"]), f"{tag}_map", figures_dir)[0])]
    write_json(resolve(run_dir) / ("regimes.json" if until is None else f"regimes-until{until}.json"), res)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run_dir", default="runs/regimes", help="the map's folder (one sub-folder per regime)")
    ap.add_argument("--figures_dir", default="figures", help="where the map's figure and table go")
    ap.add_argument(
        "--tag",
        default=None,
        help="figure and table names: <tag>_map.png (default: the folder's name; with --until N, <name>-atN)",
    )
    ap.add_argument("--warm_start", choices=list(REGIMES), help="build this regime's warm start and write its anatomy")
    ap.add_argument("--out", help="with --warm_start: the anatomy JSON to write; with --continue_from: the folder")
    ap.add_argument("--continue_from", help="copy this regime folder's finished runs into --out, to continue them")
    ap.add_argument("--until", type=int, help="read every run as if it had stopped at this step (default: its last)")
    ap.add_argument(
        "--mixed_environments",
        choices=("true", "false"),
        default="false",
        help="pair runs computed in different environments (library versions, threads); refused by default",
    )
    a = ap.parse_args(argv)

    install_signal_handlers()
    if a.until is not None and a.until < 0:
        ap.error(f"--until must be a step >= 0; got {a.until}")
    try:  # a folder or a metrics file a user can fix: one line, not a traceback
        _main(a, ap)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _main(a, ap):
    if a.continue_from:
        if not a.out:
            ap.error("--continue_from needs --out FOLDER")
        emit(continue_runs(a.continue_from, a.out))
        return
    if a.warm_start:
        if not a.out:
            ap.error("--warm_start needs --out FILE")
        emit(warm_start(a.warm_start, a.out))
        return
    name = resolve(a.run_dir).name
    tag = a.tag or (name if a.until is None else f"{name}-at{a.until}")  # an earlier horizon: not the map's files
    emit(run(a.run_dir, a.figures_dir, tag, a.until, a.mixed_environments == "true"))


if __name__ == "__main__":
    main()
