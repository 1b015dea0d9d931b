"""Two-process training driver for tests/test_multiprocess.py (not a test module itself).

    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml tests/mp_driver.py OUT_DIR

Every rank runs, through ``hicra.train.run`` (the CLI's function), on a tiny sandbox:

* every method for one step, with a reward that alternates 0/1 inside each group (every advantage non-zero);
* GRPO with dynamic sampling where rank 0's reward is constant (only rank 0 needs refills);
* hicra_adaptive for 2 steps, then resumed from its checkpoint to step 3.

Each rank saves what TRL computed (group advantages) and what reached the loss (advantages, masks, alpha) as
``OUT/<run>/rank<r>-<n>.pt``; the test reads them back and checks them. Launch outputs are checked there too.
"""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(__file__))
from conftest import TINY  # noqa: E402

import hicra.sandbox.rl as rl  # noqa: E402
from hicra.train import read_recipe, run  # noqa: E402
from hicra.training.trainer import METHODS, HICRATrainer  # noqa: E402

OUT, RANK = Path("."), 0  # set by main()
# the same tiny build as test_train's exact-advantage test: trained long enough to write strategic phrases
SANDBOX = {**TINY, "sft_steps": 80, "learning_rate": 1e-2}
BASE = {
    **{
        k: v
        for k, v in read_recipe(str(Path(__file__).resolve().parent.parent / "configs" / "sandbox.yaml"), []).items()
        if k not in ("run_dir", "max_steps", "method")
    },
    "gradient_accumulation_steps": 1,
    "sandbox": SANDBOX,
    "num_generations": 4,
    "per_device_train_batch_size": 8,
    "max_completion_length": 24,
    "n_train": 16,
    "val_every": 0,
    "save_steps": 1,
    "seed": 3,
    "learning_rate": 1e-2,
    "save_rollouts": True,
}
_current = {"run": None, "n": 0}


def alternating(completions, **kw):
    """0, 1, 0, 1 ... within every group: each group has both rewards, so each advantage is non-zero."""
    return [float(i % 2) for i in range(len(completions))]


def one_sided(completions, **kw):
    """Constant on rank 0 (every group dead: rank 0 needs refills), alternating on rank 1 (none needed)."""
    return [0.0] * len(completions) if RANK == 0 else alternating(completions)


_gen, _loss = HICRATrainer._score_batch, HICRATrainer._compute_loss


def _save(kind, tensors, extra):
    d = OUT / _current["run"]
    d.mkdir(parents=True, exist_ok=True)
    _current["n"] += 1
    torch.save(
        {"kind": kind, **{k: v.detach().cpu().clone() for k, v in tensors.items()}, **extra},
        d / f"rank{RANK}-{_current['n']:03d}.pt",
    )


def spy_score(self, inputs):
    """TRL's group advantages (B,) and ids, before the HICRA family re-weights them (the parent's output)."""
    from trl import GRPOTrainer

    orig = GRPOTrainer._generate_and_score_completions

    def record(trainer, batch):
        out = orig(trainer, batch)
        _save("trl", {k: out[k] for k in ("prompt_ids", "completion_ids", "advantages")}, {})
        return out

    GRPOTrainer._generate_and_score_completions = record
    try:
        return _gen(self, inputs)
    finally:
        GRPOTrainer._generate_and_score_completions = orig


def spy_loss(self, model, inputs):
    keys = ("prompt_ids", "completion_ids", "completion_mask", "advantages", "planning_mask")
    _save(
        "loss",
        {k: inputs[k] for k in keys if k in inputs},
        {"alpha": self.alpha, "step": self.state.global_step, "method": self.args.method},
    )
    return _loss(self, model, inputs)


def train(name, reward, **kw):
    if _current["run"] != name:  # a resumed run keeps numbering its records
        _current.update(run=name, n=0)
    rl.sandbox_reward = reward  # hicra.train.build_trainer takes the sandbox reward from this module
    return run({**BASE, "run_dir": str(OUT / "runs" / name), **kw})


def main():
    global OUT, RANK
    OUT, RANK = Path(sys.argv[1]), int(os.environ["RANK"])
    HICRATrainer._score_batch, HICRATrainer._compute_loss = spy_score, spy_loss
    for method in METHODS:
        train(method, alternating, method=method, max_steps=1)
    train("lockstep", one_sided, method="grpo", dynamic_sampling=True, max_refill_rounds=2, max_steps=2)
    train("resume", alternating, method="hicra_adaptive", max_steps=2, alpha_window=1, val_every=1, val_n=4)
    train(
        "resume", alternating, method="hicra_adaptive", max_steps=3, alpha_window=1, val_every=1, val_n=4, resume=True
    )
    print(f"[mp_driver] rank {RANK} done", flush=True)


if __name__ == "__main__":
    main()
