"""Held-out evaluation: a study's checkpoints scored on the sandbox world's test split (issue #39).

Why: every endpoint of the study, its replication and the regime map is read on the validation split, the split on
which the recipe was chosen (docs/sandbox.md §8). The world also holds a test split (hash bucket 2: 221 tasks in
the default world, disjoint from the validation, SFT and RL tasks by construction) that no run, pilot or choice has
read. This step scores each finished run's checkpoints on it with the run's own validation protocol (avg@k, its
temperature, completion cap and sampling seed 0; all test tasks up to the run's ``val_n``), the warm start as step 0,
and pairs every arm against the reference (GRPO) by seed as the study does: the final checkpoint's accuracy (the
plan's primary held-out endpoint) and the area under the held-out curve, beside the same runs' validation numbers.
The plan is docs/study.md's "The held-out test split: pre-registered plan".

How (a study folder of ``train-<arm>-s<seed>/`` runs, or a map whose sub-folders hold them):

    python -m hicra.heldout --run_dir runs/study-replication      # -> figures/study-replication_heldout.{csv,md}
    python -m hicra.heldout --run_dir runs/regimes-long --points final

Each scored point is kept in ``<run>/heldout/<split>.json``, so a stopped evaluation resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import pandas as pd
import torch

from hicra.method.stats import curve_auc, summarise
from hicra.runinfo import read_run
from hicra.sandbox.build import SandboxConfig, build, load
from hicra.sandbox.rl import validator
from hicra.stepkit.cli import from_dict, parse_cli
from hicra.stepkit.steps import StepConfig, emit
from hicra.store.io import read_metrics, write_json
from hicra.store.paths import resolve
from hicra.train import TrainScript


@dataclasses.dataclass
class HeldoutConfig(StepConfig):
    run_dir: str = "runs/study-replication"  # a study folder (train-<arm>-s<seed>/), or a map of such folders
    tag: str = ""  # table names <tag>_heldout.{csv,md}; empty: the run folder's name
    split: str = "test"  # the world's split to score: test (held out), or val to check against the runs' own logs
    points: str = "curve"  # curve: the warm start, every checkpoint at a validation step and final/; final: final/ only
    reference: str = "grpo"  # every comparison is <arm> - reference, paired by seed

    def __post_init__(self):
        if self.split not in ("test", "val"):
            raise ValueError(f"split must be test or val; got {self.split!r}")
        if self.points not in ("curve", "final"):
            raise ValueError(f"points must be curve or final; got {self.points!r}")


# --------------------------------------------------------------------------
# runs and their checkpoints


def find_runs(run_dir) -> list[tuple[str, str, int, object]]:
    """``(group, arm, seed, folder)`` of every finished run (``summary.json`` and ``final/``) in ``run_dir`` (group
    ".") or in its sub-folders (group = the sub-folder's name, e.g. a regime); arm and seed from the run's
    ``params.json`` (hicra.runinfo.read_run: a ``hicra`` run with α 0.1 is ``hicra-a0.1``), never its folder's name."""

    root = resolve(run_dir)
    out = []
    for d in sorted(root.glob("train-*")) + sorted(root.glob("*/train-*")):
        if (d / "summary.json").exists() and (d / "final").is_dir():
            group = "." if d.parent == root else d.parent.name
            info = read_run(d)
            out.append((group, info["arm"], info["seed"], d))
    if not out:
        raise FileNotFoundError(f"no finished runs (train-<arm>-s<seed>/ with summary.json and final/) in {root}")
    return out


def checkpoints(run, params: dict, points: str) -> list[tuple[int, object]]:
    """``(step, model folder)`` to score: final/ at the run's last step and, for a curve, each checkpoint-N at a
    validation step (N a multiple of ``val_every``) below it."""
    steps = int(json.loads((run / "summary.json").read_text())["steps"])
    final = run / "final-merged" if (run / "final-merged").is_dir() else run / "final"
    if (final / "adapter_config.json").exists():
        raise ValueError(f"{run}: final/ holds a LoRA adapter; train with merge_lora true to score it")
    out = [(steps, final)]
    if points == "curve":
        every = int(params.get("val_every") or 0)
        for c in run.glob("checkpoint-*"):
            n = int(c.name.split("-")[1])
            if n < steps and every and n % every == 0 and (c / "model.safetensors").exists():
                out.append((n, c))
    return sorted(out, key=lambda x: x[0])


# --------------------------------------------------------------------------
# scoring


def score_run(run, cfg: HeldoutConfig, label: str = "") -> list[dict]:
    """Every point of one run on ``cfg.split``: ``[{"step", "accuracy", "n_tasks", "k"}]``, step 0 the warm start;
    each point is written to ``<run>/heldout/<split>.json`` as soon as it is scored, with a progress line on
    stderr (``label``: which run of how many)."""

    params = json.loads((run / "params.json").read_text())
    script = TrainScript(**{f.name: params[f.name] for f in dataclasses.fields(TrainScript) if f.name in params})
    scfg = from_dict(SandboxConfig, {"seed": script.sandbox_seed, **script.sandbox})
    max_new = int(params.get("max_completion_length") or scfg.max_new_tokens)
    settings = {"split": cfg.split, "n": script.val_n, "k": script.val_k, "temperature": script.val_temperature}
    settings |= {"max_new_tokens": max_new, "seed": 0, "threads": torch.get_num_threads()}
    cache = run / "heldout" / f"{cfg.split}.json"
    done = json.loads(cache.read_text()) if cache.exists() else {}
    if done.get("settings") != settings:
        done = {"settings": settings, "points": {}}
    warm = build(scfg, progress=False)["model_dir"]
    fn = validator(scfg, script.val_n, script.val_temperature, max_new, k=script.val_k, warm_dir=warm, split=cfg.split)
    todo = [(0, None)] + checkpoints(run, params, cfg.points)
    for step, folder in todo:
        if str(step) in done["points"]:
            continue
        model, tok = load(warm if folder is None else folder)
        acc = fn.initial(model, tok) if folder is None else fn(model, tok)
        done["points"][str(step)] = acc
        write_json(cache, done)
        print(f"[heldout] {label}{run.name} step {step}: {cfg.split} accuracy {acc:.4f}", file=sys.stderr, flush=True)
    return [
        {"step": int(s), "accuracy": a, "n_tasks": fn.n_tasks, "k": script.val_k}
        for s, a in sorted(done["points"].items(), key=lambda x: int(x[0]))
    ]


def _auc(points: list[dict]) -> float:
    return curve_auc([p["step"] for p in points], [p["accuracy"] for p in points])  # the study's AUC


def _val_auc(run) -> tuple[float, float]:
    """The run's own validation: (final accuracy, area under its curve) from metrics.jsonl."""
    pts = [{"step": r["step"], "accuracy": r.get("val_accuracy")} for r in read_metrics(run / "metrics.jsonl")]
    pts = [p for p in pts if p["accuracy"] is not None and math.isfinite(p["accuracy"])]
    return (pts[-1]["accuracy"] if pts else math.nan), _auc(pts)


# --------------------------------------------------------------------------
# tables


def table(cfg: HeldoutConfig) -> pd.DataFrame:
    """One row per run: held-out final accuracy and AUC, the run's validation final accuracy and AUC."""
    rows = []
    found = find_runs(cfg.run_dir)
    for i, (group, arm, seed, run) in enumerate(found, 1):
        pts = score_run(run, cfg, label=f"run {i}/{len(found)} ")
        val_final, val_auc = _val_auc(run)
        rows.append(
            {
                "group": group,
                "arm": arm,
                "seed": seed,
                "steps": pts[-1]["step"],
                "warm": pts[0]["accuracy"],
                "final": pts[-1]["accuracy"],
                "auc": _auc(pts),
                "val_final": val_final,
                "val_auc": val_auc,
                "n_tasks": pts[-1]["n_tasks"],
                "k": pts[-1]["k"],
            }
        )
    return pd.DataFrame(rows)


def compare(runs: pd.DataFrame, ref: str = "grpo") -> pd.DataFrame:
    """<arm> - ref per group and endpoint (held-out and validation), paired by seed, in points."""
    out = []
    for group, g in runs.groupby("group"):
        base = g[g.arm == ref].set_index("seed")
        for arm in sorted(set(g.arm) - {ref}):
            a = g[g.arm == arm].set_index("seed")
            seeds = sorted(set(a.index) & set(base.index))
            for col in ("final", "auc", "val_final", "val_auc"):
                d = [100 * (a.at[s, col] - base.at[s, col]) for s in seeds]
                out.append({"group": group, "comparison": f"{arm} - {ref}", "endpoint": col, **summarise(d)})
    return pd.DataFrame(out)


def markdown(runs: pd.DataFrame, comp: pd.DataFrame, split: str) -> str:
    f = lambda r: f"{r['mean']:+.1f} [{r['lo']:+.1f}, {r['hi']:+.1f}] (n {r['n']}, MDE {r['mde']:.1f})"  # noqa: E731
    names = {"final": f"{split} split, final", "auc": f"{split} split, AUC", "val_final": "runs' validation, final"}
    names["val_auc"] = "runs' validation, AUC"
    lines = [f"| group | comparison (points, paired by seed) | {' | '.join(names.values())} |", "|---" * 6 + "|"]
    for (group, c), g in comp.groupby(["group", "comparison"]):
        cells = [f(g[g.endpoint == e].iloc[0]) if (g.endpoint == e).any() else "" for e in names]
        lines.append(f"| {group} | {c} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"| group | arm | seeds | warm start ({split} split) | {split} split, final | runs' validation, final |",
        "|---" * 6 + "|",
    ]
    for (group, arm), g in runs.groupby(["group", "arm"]):
        lines.append(
            f"| {group} | {arm} | {len(g)} | {g.warm.mean():.3f} | {g.final.mean():.3f} | {g.val_final.mean():.3f} |"
        )
    return "\n".join(lines) + "\n"


def run(cfg: HeldoutConfig) -> dict:
    """Score every finished run of ``cfg.run_dir`` on ``cfg.split``; write the per-run and comparison tables."""
    out = resolve(cfg.run_dir)  # its params.json is the study's own: this step writes heldout_<split>.json only
    tag = cfg.tag or out.name
    runs = table(cfg)
    comp = compare(runs, cfg.reference)
    figs = resolve(cfg.figures_dir)
    figs.mkdir(parents=True, exist_ok=True)
    runs.to_csv(figs / f"{tag}_heldout_runs.csv", index=False)
    comp.to_csv(figs / f"{tag}_heldout.csv", index=False)
    (figs / f"{tag}_heldout.md").write_text(markdown(runs, comp, cfg.split))
    summary = {"run_dir": str(out), "split": cfg.split, "runs": len(runs), "comparisons": comp.to_dict("records")}
    write_json(out / f"heldout_{cfg.split}.json", summary)
    return summary


def main(argv=None):
    cfg = parse_cli(HeldoutConfig, argv)
    try:
        summary = run(cfg)
    except (FileNotFoundError, ValueError) as e:  # a folder without finished runs, a LoRA adapter: what to fix
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    emit(summary)


if __name__ == "__main__":
    main()
