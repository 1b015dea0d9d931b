"""NaN never passes as success: a step whose loss, gradient norm or *updated weights* are not finite stops the run.

Why: the loss and the gradient norm are computed before the optimiser's update, so an update that overflows
(``--learning_rate 1e39`` is a finite Python float but infinite in fp32) left every weight non-finite while both
looked fine; the run saved checkpoint-1 and ``final/`` and exited 0. ``HICRATrainer.log`` now calls
``require_finite`` with the model after each update (a sum per parameter), before the step's metrics line,
checkpoint or final model is written. The message names the newest checkpoint that is complete *and* has
finite weights, and gives advice that works: a resume cannot change the learning rate (it defines the run,
``hicra.train.require_same_run``) and would repeat the same step, so the fix is a fresh start with a lower
learning rate.

    from hicra.training.finite import require_finite
    require_finite(logs, step, run_dir, model)   # NonFiniteError with what to do
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors import safe_open

from hicra.store.runfolder import checkpoint_problem, checkpoints


class NonFiniteError(RuntimeError):
    """The loss, the gradient norm or the updated weights of a step were not finite: the run stops before
    saving anything of it."""


def bad_weights(model) -> list[str]:
    """Names of the model's parameters holding a NaN or an infinity. Cheap: one sum per parameter in its own
    dtype (a reduction that allocates nothing the size of the weights; a NaN or inf element makes the sum
    non-finite) and one device sync; only a parameter whose sum is not finite gets the exact element check (a sum
    of huge finite weights can overflow, and is then not counted as bad)."""

    params = [(n, p) for n, p in model.named_parameters() if p.is_floating_point()]
    if not params:
        return []
    with torch.no_grad():
        sums = torch.stack([p.detach().sum().float().to(params[0][1].device) for _, p in params])
        if bool(torch.isfinite(sums).all()):
            return []
        flagged = [i for i, ok in enumerate(torch.isfinite(sums).cpu().tolist()) if not ok]
        return [params[i][0] for i in flagged if not bool(torch.isfinite(params[i][1]).all())]


def checkpoint_finite(ckpt) -> bool:
    """Do the checkpoint's safetensors weights hold only finite numbers? (read tensor by tensor)"""

    for f in sorted(Path(ckpt).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                t = st.get_tensor(k)
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    return False
    return True


def last_good_checkpoint(run_dir) -> Path | None:
    """The newest checkpoint that is complete (``hicra.store.runfolder.checkpoint_problem``) and has finite weights."""

    for p in reversed(checkpoints(run_dir)):
        if checkpoint_problem(p) is None and checkpoint_finite(p):
            return p
    return None


def require_finite(logs: dict, step: int, run_dir, model=None) -> None:
    """Stop the run at a step whose loss or gradient norm is NaN or infinite, or whose update left a weight
    non-finite, before its metrics line or a checkpoint is written; the message names the last good checkpoint."""
    bad = [
        f"{k} = {logs[k]}"
        for k in ("loss", "grad_norm")
        if isinstance(logs.get(k), (int, float)) and not math.isfinite(logs[k])
    ]
    if not bad and model is not None:
        names = bad_weights(model)
        if names:
            bad = [f"the update left {len(names)} weight tensor(s) non-finite (first: {names[0]})"]
    if bad:
        good = last_good_checkpoint(run_dir)
        raise NonFiniteError(
            f"step {step}: {', '.join(bad)}; the run stopped and saved nothing of this step. Last good checkpoint: "
            f"{good or 'none'}. A resume keeps the run's settings and would repeat this step: start afresh with a "
            f"lower learning_rate (or check temperature / entropy_coef) using --overwrite true (the earlier files "
            f"are kept under replaced-<time>/) or another --run_dir."
        )
