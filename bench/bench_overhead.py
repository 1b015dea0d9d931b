"""Benchmark: HICRA's per-step overhead over GRPO on the sandbox default (goal: <= 3 %).

Both methods share TRL's step: sampling + rewards + group advantages, then the
loss's forward and backward pass. HICRA adds the planning mask (the tagger over
the batch's completion ids) and ``A + alpha|A|`` on it. On one real batch of the
sandbox profile (64 completions, 256-token cap) this times, in alternation and
in the same process:

* the GRPO step: TRL's generate-and-score plus ``_compute_loss`` + backward;
* HICRA's additions on that batch: ``tagger.mask`` + ``hicra_advantages``;

and reports the overhead as additions / GRPO step (a same-run ratio).

    python bench/bench_overhead.py [--repeats 5]      # prints figures, last line JSON
"""

import argparse
import json
import statistics
import time

import torch
from trl import GRPOTrainer

from hicra.method.advantage import hicra_advantages
from hicra.train import build_trainer, read_recipe


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: bf16 on the GPU")
    args = ap.parse_args()
    gpu = {"use_cpu": False, "bf16": True} if args.device == "cuda" else {}
    trainer, _ = build_trainer(
        {
            **read_recipe("configs/sandbox.yaml", []),
            "method": "hicra",
            "per_device_train_batch_size": 64,
            "gradient_accumulation_steps": 1,
            "run_dir": "runs/bench-overhead",
            "val_every": 0,
            "save_rollouts": False,
            **gpu,
        }
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); the loss normaliser reads it
    batch = next(iter(trainer.get_train_dataloader()))
    step, extra = [], []
    for r in range(args.repeats):
        _sync()
        t0 = time.perf_counter()
        out = GRPOTrainer._generate_and_score_completions(trainer, batch)  # the GRPO path, no planning mask
        loss = GRPOTrainer._compute_loss(trainer, trainer.model, out)
        loss.backward()
        trainer.model.zero_grad()
        _sync()
        step.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        mask = trainer.tagger.mask(out["completion_ids"], out["completion_mask"]).to(out["completion_ids"].device)
        hicra_advantages(out["advantages"], mask, trainer.args.hicra_alpha)
        _sync()
        extra.append(time.perf_counter() - t0)
        print(
            f"repeat {r}: GRPO step {step[-1]:.3f} s, HICRA additions {1e3 * extra[-1]:.2f} ms "
            f"({int(out['completion_mask'].sum())} completion tokens, {int(mask.sum())} planning)",
            flush=True,
        )
    s, e = statistics.median(step), statistics.median(extra)
    print(
        json.dumps(
            {
                "grpo_step_s": round(s, 3),
                "hicra_extra_ms": round(1e3 * e, 2),
                "overhead_pct": round(100 * e / s, 3),
                "repeats": args.repeats,
                "threads": torch.get_num_threads(),
                "device": args.device,
            }
        )
    )


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
