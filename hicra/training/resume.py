"""Resume checks: a resume continues *the same run*, checked against the run's own record, or is refused.

Why: the check of defining settings (``hicra.train.require_same_run``) read only ``params.json``; with it deleted,
``--resume true --method grpo --seed 9`` continued a hicra seed-0 run as grpo seed 9 (exit 0, metrics of both in
one file). Every checkpoint now carries a copy of the run's record (``hicra_params.json``, written by
``HICRATrainer._save_checkpoint``), and the metrics lines carry method and seed. ``check_resume`` compares the
command with, in this order: ``params.json``, the checkpoint's own copy, the metrics lines (method and seed only);
with none of them it refuses. It also refuses a ``--max_steps`` below the checkpoint's step (the run would
silently train past it).

    from hicra.training.resume import check_resume
    check_resume(run_dir, recipe, ckpt, require_same_run)  # RunFolderError naming each difference
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hicra.store.runfolder import RECORD, RunFolderError
from hicra.training.trainer import HICRAConfig


def recorded(run_dir, ckpt) -> tuple[dict | None, str]:
    """(the run's recorded settings, where they came from); ``(None, "")`` when the run has no record."""
    d = Path(run_dir)
    for f in (d / "params.json", Path(ckpt) / RECORD if ckpt else None):
        if f is not None and f.is_file():
            try:
                rec = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(rec, dict):
                return rec, str(f)
    return None, ""


def metrics_identity(run_dir) -> dict:
    """Method and seed as the run's metrics lines give them (the first line that has both; torn lines skipped)."""
    f = Path(run_dir) / "metrics.jsonl"
    if not f.is_file():
        return {}
    for line in f.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "method" in rec and "seed" in rec:
            return {"method": rec["method"], "seed": rec["seed"]}
    return {}


def check_resume(run_dir, recipe, ckpt, require_same_run) -> None:
    """Refuse a resume of ``run_dir`` from ``ckpt`` that would make a hybrid run, or one that cannot be checked.
    ``recipe`` (a parsed ``hicra.train.Recipe``: its ``kw``) and ``require_same_run`` are hicra.train's, passed in
    (this module sits below it)."""

    if ckpt is not None:
        step = int(re.search(r"(\d+)$", Path(ckpt).name).group(1))
        max_steps = recipe.kw.get("max_steps", -1)
        if 0 < max_steps < step:
            raise RunFolderError(
                f"--resume true with --max_steps {max_steps}, but {ckpt} is at step {step}: the run would go on "
                f"past it. Resume with --max_steps {step} or more, or start afresh (--overwrite true)"
            )
    rec, source = recorded(run_dir, ckpt)
    if rec is not None:
        try:
            require_same_run(rec, recipe, run_dir)
        except RunFolderError:
            raise
        except (ValueError, TypeError) as e:  # e.g. a NaN option stored as null by an older version
            raise RunFolderError(
                f"--resume true cannot check {run_dir} against its record {source}: {e}. That run's settings "
                f"are not valid now: start afresh (--overwrite true, or another --run_dir)"
            ) from None
        return
    if ckpt is None:
        return  # nothing to continue: the run starts fresh (and says so)
    ident = metrics_identity(run_dir)
    if not ident:
        raise RunFolderError(
            f"--resume true cannot check that {run_dir} is the same run: its params.json is missing and neither "
            f"{ckpt} nor metrics.jsonl records its settings. Restore params.json, or start afresh (--overwrite true)"
        )

    now = recipe.kw
    want = {"method": now.get("method", HICRAConfig.method), "seed": now.get("seed", HICRAConfig.seed)}
    diff = [f"{k} {ident[k]!r} -> {want[k]!r}" for k in ("method", "seed") if ident[k] != want[k]]
    if diff:
        raise RunFolderError(
            f"--resume true would continue {run_dir} with other settings: {'; '.join(diff)} (from its metrics "
            f"lines; params.json is missing). Resume with the run's settings, or start a new run (another "
            f"--run_dir, or --overwrite true to set this one aside)"
        )
    print(
        f"[hicra] {run_dir} has no params.json: resuming checked against its metrics lines (method, seed) only",
        flush=True,
    )
