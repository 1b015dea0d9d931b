"""A training run as its ``params.json`` describes it, and the one command that trains a run (issue #35).

Why: analyses used to read a run's method and α from its folder name (``train-hicra-a0.1-s3``) plus a hard-coded
``{"grpo": 0.0, "hicra": 0.2}``, so a ``hicra`` run under a recipe with another α was labelled 0.2; and the study
and the regime map each built their own ``python -m hicra.train`` command (α arms failed in the map). Here:

* ``train_command``: the training command of one (arm, seed) for every profile that trains (study, replication,
  regimes, regimes-long; the paper profile and its rehearsal through ``train:`` steps, hicra.orchestration.profiles).
* ``read_run``: method, α, seed, the arm label and the environment record, read from ``params.json`` only;
  ``arm_label`` names an arm from its settings (``hicra``, ``hicra-a0.1``; a LoRA run its own arm).
* ``compare_tables``: a run and its re-run, per seed (is the re-run exact?); ``compare_maps``: a regime map and its
  re-run, per regime (does the re-run's mean lie in the record's 95 % interval?).
* ``check_environments``: runs to be paired must share one environment (``hicra.environment`` keys); a difference
  is refused with what differs, unless the analysis is told ``mixed_environments``.

    from hicra.runinfo import read_run, train_command
    read_run("runs/study/train-hicra-s0")   # {'method': 'hicra', 'alpha': 0.2, 'arm': 'hicra', 'seed': 0, ...}

    python -m hicra.runinfo read runs/study/train-hicra-s0
    python -m hicra.runinfo compare figures/study-replication_runs.csv figures/replication-lock_runs.csv
    python -m hicra.runinfo compare figures/regimes_map.csv figures/<rerun>_map.csv   # e.g. run 7, once in
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pandas as pd

from hicra.environment import differences
from hicra.method.methods import DEFAULT_ALPHA, REGISTRY

UNKNOWN_ENV = "unknown"  # the environment key of a run written before runs recorded theirs


# --------------------------------------------------------------------------
# the training command


def parse_arm(arm: str) -> tuple[str, float | None]:
    """An arm name of a profile -> (method, α or None for the recipe's): ``hicra-a0.1`` -> ("hicra", 0.1)."""
    m = re.fullmatch(r"(.+?)-a([0-9]*\.?[0-9]+)", arm)
    method, alpha = (m.group(1), float(m.group(2))) if m else (arm, None)
    if method not in REGISTRY:
        raise ValueError(f"arm {arm!r}: unknown method {method!r}; one of {', '.join(REGISTRY)} (α arm: hicra-a0.1)")
    return method, alpha


def train_command(
    recipe: str,
    arm: str,
    seed: int,
    run_dir: str,
    steps: int | None = None,
    val_every: int | None = None,
    save_steps: int | None = None,
    sandbox: dict | None = None,
    torch_threads: int | None = None,
    launcher: list | None = None,
    flags: list | None = None,
) -> list[str]:
    """``python -m hicra.train RECIPE --method M [--hicra_alpha A] --seed S ... --run_dir D --resume true``: the one
    builder of a training step's command. ``arm`` is a method or ``<method>-a<alpha>``; ``launcher`` replaces
    ``python`` (e.g. ``accelerate launch --config_file F``); ``flags`` are appended last (later flags win)."""
    method, alpha = parse_arm(arm)
    cmd = [*(launcher or ["python"]), "-m", "hicra.train", recipe, "--method", method, "--seed", str(seed)]
    cmd += ["--hicra_alpha", str(alpha)] if alpha is not None else []
    cmd += ["--max_steps", str(steps)] if steps else []
    cmd += ["--val_every", str(val_every)] if val_every else []
    cmd += ["--save_steps", str(save_steps)] if save_steps else []
    cmd += ["--torch_threads", str(torch_threads)] if torch_threads else []
    cmd += ["--run_dir", run_dir, "--resume", "true"]
    cmd += ["--sandbox", json.dumps(sandbox)] if sandbox else []
    return cmd + [str(f) for f in flags or []]


# --------------------------------------------------------------------------
# a run read back


def uses_alpha(method: str) -> bool:
    """Whether a method's advantage has an α (GRPO and the plain baselines have none: α 0 in the sweep's terms)."""
    m = REGISTRY.get(method)
    return bool(m is not None and m.token_rule)


def arm_label(method: str, alpha: float | None, lora_r: int | None = None) -> str:
    """The arm a run belongs to: its method, ``-a<alpha>`` where α is not the paper's 0.2, `` (LoRA r=8)``."""
    arm = method if alpha is None or not uses_alpha(method) or alpha == DEFAULT_ALPHA else f"{method}-a{alpha:g}"
    return f"{arm} (LoRA r={lora_r})" if lora_r else arm


def read_run(run_dir) -> dict:
    """A run's defining settings from its ``params.json``: method, α (0 for a method without one), seed, arm,
    LoRA rank, and ``environment`` (its record, or ``None`` for a run written before runs recorded one) with its
    ``environment_key`` (``unknown`` then). A folder without params.json is refused: its name says nothing."""
    f = Path(run_dir) / "params.json"
    if not f.exists():
        raise FileNotFoundError(f"{f} not found: a run is read from its params.json (written by python -m hicra.train)")
    p = json.loads(f.read_text())
    method = p.get("method")
    if not isinstance(method, str):
        raise ValueError(f"{f}: no `method`; train the run with python -m hicra.train, which records it")
    alpha = float(p.get("hicra_alpha", DEFAULT_ALPHA)) if uses_alpha(method) else 0.0
    env = p.get("environment")
    return {
        "method": method,
        "alpha": alpha,
        "seed": int(p.get("seed", 0)),
        "lora_r": p.get("lora_r"),
        "arm": arm_label(method, alpha, p.get("lora_r")),
        "environment": env,
        "environment_key": (env or {}).get("key") or UNKNOWN_ENV,
    }


def run_arm(run_dir, default: str | None = None) -> tuple[str | None, int]:
    """A training run's arm and seed, from its ``params.json`` (``read_run``): the method, with its α
    where that is not the paper's (``"hicra-a0.1"``) and as ``"hicra (LoRA r=8)"`` for an adapter run (its own arm:
    not one more seed of the full fine-tune), and the seed; ``(default, 0)`` without the file."""
    f = Path(run_dir) / "params.json"
    if not f.exists():
        return default, 0
    if "method" not in (params := json.loads(f.read_text())):  # a step's params.json, not a training run's
        return default, params.get("seed", 0)

    info = read_run(run_dir)
    return info["arm"], info["seed"]


def check_environments(runs: dict, mixed: bool = False, what: str = "runs") -> str:
    """``runs``: {run name: read_run(...)}. One environment key among them returns it; several raise a ValueError
    naming each group and what differs (``hicra.environment.differences``), unless ``mixed`` (then ``mixed``).
    Runs without a record count as one unknown environment, said on stderr, never refused for that alone."""

    groups: dict[str, list[str]] = {}
    for name, r in runs.items():
        groups.setdefault(r["environment_key"], []).append(name)
    if UNKNOWN_ENV in groups:
        n = len(groups[UNKNOWN_ENV])
        print(f"[hicra] {n} of {len(runs)} {what} have no environment record (older runs): one unknown environment")
    if len(groups) <= 1:
        return next(iter(groups), UNKNOWN_ENV)
    first = {k: next(runs[n]["environment"] for n in v) for k, v in groups.items()}
    keys = list(groups)
    diffs = [
        f"{keys[0]} vs {k}: " + ("; ".join(differences(first[keys[0]] or {}, first[k] or {})) or "no record")
        for k in keys[1:]
    ]
    listing = "; ".join(f"{k}: {', '.join(sorted(v)[:3])}{' ...' if len(v) > 3 else ''}" for k, v in groups.items())
    if mixed:
        print(f"[hicra] pairing {what} from {len(groups)} environments as told (mixed_environments): {diffs}")
        return "mixed"
    raise ValueError(
        f"{what} computed in {len(groups)} environments ({listing}); differences: {' | '.join(diffs)}. Numbers from "
        "different library versions or thread counts are not comparable to the digit: rerun them in one environment, "
        "or pass --mixed_environments true to pair them anyway"
    )


# --------------------------------------------------------------------------
# the per-run table a study commits

RUN_COLUMNS = ("seed", "arm", "method", "alpha")  # then every endpoint, then the environment key


def write_runs_table(runs, path, first: tuple = ()) -> None:
    """``figures/<tag>_runs.csv``: one row per run, ``first`` columns (e.g. the regime), seed, arm, method, α, every
    endpoint at full precision (pandas writes each float's shortest exact repr), the environment key last. The
    headline and the comparisons are recomputed from it (hicra.headline, tests/test_headline.py)."""
    t = runs.drop(columns=["run"], errors="ignore")
    lead = [*first, *RUN_COLUMNS]
    rest = [c for c in t.columns if c not in lead and c != "environment"]
    t = t[[*lead, *rest, *(["environment"] if "environment" in t else [])]]
    t.sort_values([*first, "arm", "seed"]).to_csv(path, index=False)


def compare_tables(a, b, endpoints: tuple = ("final", "auc", "planning_share_change")):
    """Two per-run tables of the same runs (a re-run: e.g. run 5 and its re-run under the lock), joined on arm and
    seed (and regime, for a map's runs): each endpoint's value in ``a``, in ``b`` and ``b - a``; ``exact`` says
    whether every endpoint matched to the digit. Runs in only one table are listed with the other side empty."""

    ta, tb = (pd.read_csv(x) if not isinstance(x, pd.DataFrame) else x for x in (a, b))
    cols = [e for e in endpoints if e in ta and e in tb]
    on = [*(["regime"] if "regime" in ta and "regime" in tb else []), "arm", "seed"]  # a map's runs: per regime
    t = ta[[*on, *cols]].merge(tb[[*on, *cols]], on=on, how="outer", suffixes=("_a", "_b"))
    for e in cols:
        t[f"{e}_diff"] = t[f"{e}_b"] - t[f"{e}_a"]
    same = lambda x, y: x == y or (pd.isna(x) and pd.isna(y))  # noqa: E731  (no value on both sides: the same)
    t["exact"] = [all(same(r[f"{e}_a"], r[f"{e}_b"]) for e in cols) for _, r in t.iterrows()]
    return t.sort_values(on).reset_index(drop=True)


COMPARED = (  # (quantity, the map's column, its 95 % interval's columns where the map keeps one)
    ("warm start: accuracy", "accuracy", None),
    ("warm start: arithmetic slips", "execution_error_rate", None),
    ("GRPO, accuracy at the last step", "grpo_final", None),
    ("HICRA, accuracy at the last step", "hicra_final", None),
    ("HICRA − GRPO, accuracy at the last step", "final_mean", ("final_lo", "final_hi")),
    ("HICRA − GRPO, area under the curve", "auc_mean", ("auc_lo", "auc_hi")),
    ("HICRA − GRPO, Fig 4 planning share", "fig4_mean", ("fig4_lo", "fig4_hi")),
)


def hicra_arm(arms) -> str:
    """A map regime's HICRA arm from its runs' arm labels: ``hicra``, or the one other arm beside GRPO that a map ran
    (an α arm such as ``hicra-a0.1``)."""
    other = sorted(set(arms) - {"grpo"})
    return "hicra" if "hicra" in other or len(other) != 1 else other[0]


def map_arm(m: pd.DataFrame) -> pd.Series:
    """Each regime's HICRA arm in a map table: its ``hicra_arm`` column (written since the α arms), else ``hicra``
    (the maps written before it ran GRPO and HICRA only)."""
    arm = m["hicra_arm"] if "hicra_arm" in m else pd.Series("hicra", index=m.index)
    return arm.fillna("hicra")


def read_map(x, name: str = "map") -> pd.DataFrame:
    """A regime map's table (``<tag>_map.csv`` or a frame), checked: the columns ``compare_maps`` reads, one row per
    regime. A file that is not a map's table is refused in one line that names it and what it lacks."""
    if isinstance(x, pd.DataFrame):
        m = x
    else:
        try:
            m = pd.read_csv(x)
        except pd.errors.EmptyDataError:
            raise ValueError(f"{x} is empty: a map's table is written by python -m hicra.regimes") from None
        except (IsADirectoryError, PermissionError) as e:
            raise ValueError(f"{x}: not a readable file ({type(e).__name__}); give a <tag>_map.csv") from None
        name = str(x)
    need = ["regime", "seeds", "steps", *(c for _, col, ci in COMPARED for c in (col, *(ci or ())))]
    lacks = [c for c in need if c not in m]
    if lacks:
        raise ValueError(
            f"{name} is not a regime map's table (it lacks {', '.join(lacks)}): give a <tag>_map.csv written by "
            "python -m hicra.regimes"
        )
    twice = sorted(m.regime[m.regime.duplicated()].unique())
    if twice:
        raise ValueError(f"{name} has more than one row for regime(s) {twice}: one row a regime")
    return m


def compare_maps(record, rerun, names: tuple | None = None) -> pd.DataFrame:
    """A re-run of a map against the map of record (two ``<tag>_map.csv`` tables, or frames), per regime and
    quantity: both values, ``diff`` (re-run − record) and, where the record keeps a 95 % interval (the HICRA − GRPO
    comparisons; an arm's mean has none), ``inside``: whether the re-run's mean lies in it (None where either side
    has no value). The maps must be the same design: every regime with finished runs in one has them in the other,
    with the same HICRA arm, number of seeds and steps; otherwise refused, saying what differs. A map keeps the
    number of seeds, not which: that the re-run used the same seeds is the re-run's plan's to say. ``names``: what
    the messages call the two tables (default: their paths, or "the record" / "the re-run" for frames)."""

    names = names or [x if isinstance(x, str) else k for x, k in zip((record, rerun), ("the record", "the re-run"))]
    a, b = (read_map(x, n) for x, n in zip((record, rerun), names))
    a, b = (t.assign(hicra_arm=map_arm(t)).set_index("regime") for t in (a, b))
    done = [set(t.index[t.seeds.notna()]) for t in (a, b)]  # regimes with runs (a warm start alone has no seeds)
    if not done[0] and not done[1]:
        raise ValueError(f"neither {names[0]} nor {names[1]} has a regime with finished runs: nothing to compare")
    problems = [f"{r} has finished runs in {names[k]} only" for k in (0, 1) for r in sorted(done[k] - done[1 - k])]
    for r in [r for r in a.index if r in done[0] & done[1]]:  # the record's order
        for k in ("hicra_arm", "seeds", "steps"):
            if a.loc[r, k] != b.loc[r, k]:
                problems.append(f"{r}: {k} {a.loc[r, k]} vs {b.loc[r, k]}")
    if problems:
        raise ValueError(f"not the same map ({'; '.join(problems)}): a re-run is compared with the map it repeats")
    rows = []
    for regime in [r for r in a.index if r in done[0]]:  # the record's order
        ra, rb = a.loc[regime], b.loc[regime]
        for quantity, col, ci in COMPARED:
            lo, hi = (float(ra[ci[0]]), float(ra[ci[1]])) if ci else (math.nan, math.nan)
            known = ci and all(map(math.isfinite, (lo, hi, float(rb[col]))))  # e.g. no Fig 4 without failures
            rows.append(
                {
                    "regime": regime,
                    "quantity": quantity,
                    "record": float(ra[col]),
                    "record_lo": lo,
                    "record_hi": hi,
                    "rerun": float(rb[col]),
                    "rerun_lo": float(rb[ci[0]]) if ci else math.nan,
                    "rerun_hi": float(rb[ci[1]]) if ci else math.nan,
                    "diff": float(rb[col]) - float(ra[col]),
                    "inside": (lo <= float(rb[col]) <= hi) if known else None,
                }
            )
    return pd.DataFrame(rows)


def main(argv=None):

    ap = argparse.ArgumentParser(prog="python -m hicra.runinfo", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("read", help="print a run's settings from its params.json")
    r.add_argument("run_dir")
    c = sub.add_parser(
        "compare",
        help="a re-run against its record: two per-run tables (per seed) or two regime maps (per regime, with the "
        "record's 95 %% intervals)",
    )
    c.add_argument("a", help="the record: figures/<study>_runs.csv, or a map's figures/<tag>_map.csv")
    c.add_argument("b", help="the re-run's table of the same kind")
    a = ap.parse_args(argv)
    if a.cmd == "read":
        print(json.dumps(read_run(a.run_dir), indent=1))
        return
    for f in (a.a, a.b):
        if not Path(f).is_file():
            what = "not a file" if Path(f).exists() else "not found"
            ap.error(
                f"{f}: {what}; give a per-run table (python -m hicra.study writes figures/<tag>_runs.csv) or a "
                "regime map (python -m hicra.regimes writes figures/<tag>_map.csv)"
            )
    tables = []
    for f in (a.a, a.b):
        try:
            tables.append(pd.read_csv(f))
        except pd.errors.EmptyDataError:
            ap.error(f"{f} is empty: compare two per-run tables (figures/<study>_runs.csv) or two maps (<tag>_map.csv)")
    ta, tb = tables
    maps = ["final_mean" in t and "regime" in t for t in (ta, tb)]
    if maps[0] != maps[1]:
        ap.error(f"{a.a} and {a.b} are not the same kind of table: compare two per-run tables or two maps")
    if all(maps):
        try:
            t = compare_maps(ta, tb, names=(a.a, a.b))  # the frames read above, named by their files
        except ValueError as e:
            ap.error(str(e))
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(t.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        has = t[t.inside.notna()]
        print(json.dumps({"record": a.a, "rerun": a.b, "inside": int(has.inside.sum()), "of": len(has)}))
        return
    need = [c for c in ("arm", "seed") if c not in ta or c not in tb]
    if need:
        ap.error(f"{a.a} or {a.b} lacks {', '.join(need)}: compare two per-run tables (figures/<study>_runs.csv)")
    t = compare_tables(ta, tb)
    print(t.to_string(index=False))
    print(f"{int(t.exact.sum())} of {len(t)} runs equal to the digit in every endpoint")


if __name__ == "__main__":
    main()
