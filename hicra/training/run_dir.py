"""What the trainer does to its run folder's files: stale files removed, a full disk said in words (issue #36 split).

What: ``prune_run_dir`` removes what an earlier run in the folder wrote after the step being (re)started from
(rollouts, checkpoints, loss inputs); ``disk_full_error`` turns a save that failed on a full disk (ENOSPC anywhere
in the exception's chain, or under 16 MB free) into one OSError that says so and how to resume.
Why: a fresh start or a resume must never mix in stale files, and torch's / safetensors' own errors on a full disk
may not say it. Pure file handling: no torch, no TRL.
How to run: the trainer calls both (``HICRATrainer.train`` / ``_save_checkpoint``); by hand:

    from hicra.training.run_dir import prune_run_dir
    prune_run_dir("runs/train/sandbox", step=25)   # names removed after step 25
"""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

from hicra.store.runfolder import last_complete_checkpoint


def disk_full_error(e: BaseException, folder, what: str) -> BaseException:
    """``e`` as it is, or, when the disk holding ``folder`` is full (ENOSPC anywhere in ``e``'s chain, or under
    16 MB free), an OSError that says so and what to do."""

    chain, x = [], e
    while x is not None and len(chain) < 10:
        chain.append(x)
        x = x.__cause__ or x.__context__
    full = any(getattr(c, "errno", None) == errno.ENOSPC or "no space left" in str(c).lower() for c in chain)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if not full and (free is None or free >= 16 * 2**20):
        return e

    return OSError(
        errno.ENOSPC,
        f"no space left on the disk of {folder} while saving {what} "
        f"({'?' if free is None else free // 2**20} MB free; {type(e).__name__}: "
        f"{str(e)[:200]}). Free space, then resume with --resume true: it starts from the "
        f"last complete checkpoint ({last_complete_checkpoint(folder) or 'none yet'})",
    )


def prune_run_dir(run_dir, step: int) -> list[str]:
    """Remove what a previous run in this folder wrote after ``step`` (rollouts, checkpoints), so a fresh
    start (step 0) or a resume never mixes in stale files; returns the removed names."""

    removed = []
    for p in (
        sorted(Path(run_dir).glob("rollouts/step_*.parquet"))
        + sorted(Path(run_dir).glob("checkpoint-*"))
        + sorted(Path(run_dir).glob("loss_inputs/step_*.pt"))
    ):
        m = re.search(r"(\d+)", p.name)
        if m and int(m.group(1)) > step:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            removed.append(p.name)
    if removed:
        print(f"[hicra] removed {len(removed)} stale file(s) after step {step} in {run_dir}", flush=True)
    return removed
