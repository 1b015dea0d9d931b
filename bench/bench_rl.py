"""Benchmark: RL experience per second on the sandbox: the default (v2) against the first default (v1), same run.

A GRPO training step is generation (TRL's sampling of every completion), rewards,
group advantages, and the loss's forward and backward pass. This runs a few real
training steps of each named recipe one after another in this process (same
threads, same machine) and reports, per recipe, the median over steps (the first,
warm-up, step dropped) of

* completions per second = completions in the step / step time;
* completion tokens per second = completions x mean completion length / step time;

and the ratio v2 / v1 (issue #11 goal for the new default: >= 3x completions/s), also with v2 at 64
completions a step like v1 (v2_64), since the default now takes 128 a step. v2 gains from
the world (shorter traces, cap 160 not 256) and from the compacting sampler (hicra.training.decode,
``rollout: compact``).

Against the limit (issue #26): the model's own matmul shapes are timed on this machine (GFLOP/s at a decode-sized
batch of 128 rows and a training-sized one of 2,048), and a completion token costs a generation forward (2N FLOPs)
plus a training forward and backward (6N), N the parameters of the model's linear layers (LM head included,
embedding lookups not, attention over the context ignored: small at these lengths). The limit is the tokens/s
those FLOPs allow at the measured rates; the share is the measured tokens/s over it.

    python bench/bench_rl.py [--steps 6] [--threads 2]     # prints figures, last line JSON
"""

import argparse
import json
import os
import shutil
import statistics
import time

# name -> (recipe, overrides). v2_64 is the v2 default at v1's 64 completions a step (the default before study
# run 4 took 128), so the ratio's share that comes from the larger batch shows on its own line.
RECIPES = {
    "sandbox_v1": ("configs/sandbox_v1.yaml", {}),
    "sandbox_v2": ("configs/sandbox.yaml", {}),
    "sandbox_v2_64": ("configs/sandbox.yaml", {"per_device_train_batch_size": 16}),
}


def run_recipe(name: str, path: str, steps: int, overrides: dict | None = None) -> dict:
    from hicra.stepkit.config import resolve
    from hicra.train import build_trainer, read_recipe

    run_dir = resolve(f"runs/bench-rl/{name}")
    shutil.rmtree(run_dir, ignore_errors=True)  # a scratch folder of this bench only
    data = {
        **read_recipe(path, []),
        "method": "grpo",
        "max_steps": steps,
        "val_every": 0,
        "save_steps": 10_000,
        "save_rollouts": False,
        "run_dir": str(run_dir),
        "disable_tqdm": True,
        **(overrides or {}),
    }
    trainer, _ = build_trainer(data)
    t0 = time.time()
    trainer.train()
    wall = time.time() - t0
    lines = [json.loads(x) for x in open(run_dir / "metrics.jsonl")]
    lines = [x for x in lines if x.get("step_time")][1:]  # drop the warm-up step
    rows = trainer.args.generation_batch_size  # completions a step (per-device batch x accumulation)
    cps = [rows / x["step_time"] for x in lines]
    tps = [rows * x["length"] / x["step_time"] for x in lines]
    return {
        "recipe": path,
        **({"overrides": overrides} if overrides else {}),
        "steps": len(lines),
        "rows_per_step": rows,
        "cap": trainer.args.max_completion_length,
        "step_time_s": round(statistics.median(x["step_time"] for x in lines), 3),
        "mean_length": round(statistics.mean(x["length"] for x in lines), 1),
        "completions_per_s": round(statistics.median(cps), 2),
        "tokens_per_s": round(statistics.median(tps), 1),
        "wall_s": round(wall, 1),
    }


def flop_limit(model, rows_gen: int = 128, rows_train: int = 2048, reps: int = 20) -> dict:
    """Measured matmul GFLOP/s on the model's linear shapes, and the completion tokens/s they allow."""
    import torch

    shapes = [tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    n = sum(o * i for o, i in shapes)

    def gflops(rows):
        xs = [(torch.randn(rows, i), torch.randn(o, i)) for o, i in shapes]
        for x, w in xs:  # warm-up
            x @ w.T
        t0 = time.perf_counter()
        for _ in range(reps):
            for x, w in xs:
                x @ w.T
        return 2 * rows * n * reps / (time.perf_counter() - t0) / 1e9

    g_gen, g_train = gflops(rows_gen), gflops(rows_train)
    per_token_s = 2 * n / (g_gen * 1e9) + 6 * n / (g_train * 1e9)
    return {
        "linear_params": n,
        "gflops_decode_batch": round(g_gen, 2),
        "gflops_train_batch": round(g_train, 2),
        "flops_per_completion_token": 8 * n,
        "tokens_per_s_limit": round(1 / per_token_s, 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    res = {name: run_recipe(name, path, args.steps, extra) for name, (path, extra) in RECIPES.items()}
    for name, r in res.items():
        print(
            f"{name:13s} {r['completions_per_s']:7.2f} completions/s  {r['tokens_per_s']:8.1f} tokens/s  "
            f"(step {r['step_time_s']} s, {r['rows_per_step']} rows, mean length {r['mean_length']}, cap {r['cap']})"
        )
    from hicra.sandbox.build import SandboxConfig, build, load

    limit = flop_limit(load(build(SandboxConfig())["model_dir"])[0])
    share = res["sandbox_v2"]["tokens_per_s"] / limit["tokens_per_s_limit"]
    print(
        f"matmul limit for the v2 model's shapes: {limit['gflops_decode_batch']} GFLOP/s (decode batch), "
        f"{limit['gflops_train_batch']} GFLOP/s (training batch); {limit['flops_per_completion_token']:,} FLOPs a "
        f"completion token -> {limit['tokens_per_s_limit']:,.0f} tokens/s; the v2 default reaches {share:.1%} of it"
    )
    ratio = res["sandbox_v2"]["completions_per_s"] / res["sandbox_v1"]["completions_per_s"]
    print(f"v2 / v1 completions per second: {ratio:.2f}x (goal >= 3x)")
    ratio64 = res["sandbox_v2_64"]["completions_per_s"] / res["sandbox_v1"]["completions_per_s"]
    print(f"v2 at 64 completions a step / v1: {ratio64:.2f}x")
    print(
        json.dumps(
            {
                "threads": args.threads,
                **res,
                "flop_limit": {**limit, "share_of_limit_v2": round(share, 4)},
                "ratio_completions_per_s": round(ratio, 2),
                "ratio_completions_per_s_at_64": round(ratio64, 2),
                "ratio_tokens_per_s": round(res["sandbox_v2"]["tokens_per_s"] / res["sandbox_v1"]["tokens_per_s"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
