"""Device check (GPU boxes): the trainer on CUDA in bf16 — HICRA's advantages handed to the loss are exactly
A + alpha|A|*mask with dynamic sampling on, metrics lines are complete and finite, GRPO vs HICRA step times,
throughput (completions/s, completion tokens/s) beside the CPU bench's figure, and peak GPU memory.

    python bench/gpu_check.py [OUT.json]   # last line JSON (also written to OUT.json); needs CUDA and the sandbox
    bash bench/gpu_check.sh                # the device machine's wrapper: wheels, cache, time limit (see there)
"""

import json
import math
import sys
import time

import torch
from trl import GRPOTrainer

from hicra.method.dynamics import RECORD_KEYS
from hicra.train import build_trainer, read_recipe
from hicra.training.trainer import HICRATrainer


def _key(prompt_ids, completion_ids, completion_mask, pad):
    p = tuple(int(x) for x in prompt_ids if int(x) != pad)
    c = tuple(int(x) for x, m in zip(completion_ids, completion_mask) if m)
    return p, c


def main():
    assert torch.cuda.is_available(), "no CUDA device"
    base, seen = {}, []
    orig_gen, orig_loss = GRPOTrainer._generate_and_score_completions, HICRATrainer._compute_loss

    def gen(self, inputs):
        out = orig_gen(self, inputs)
        pad = self.processing_class.pad_token_id
        for i in range(len(out["advantages"])):
            base[_key(out["prompt_ids"][i], out["completion_ids"][i], out["completion_mask"][i], pad)] = float(
                out["advantages"][i]
            )
        return out

    def loss(self, model, inputs):
        seen.append(
            {k: inputs[k].detach().clone() for k in ("prompt_ids", "completion_ids", "advantages", "completion_mask")}
        )
        return orig_loss(self, model, inputs)

    GRPOTrainer._generate_and_score_completions, HICRATrainer._compute_loss = gen, loss
    res = {"device": torch.cuda.get_device_name(0)}
    times = {}
    for method in ("grpo", "hicra"):
        base.clear(), seen.clear()
        torch.cuda.reset_peak_memory_stats()
        tr, _ = build_trainer(
            {
                **read_recipe("configs/sandbox.yaml", []),
                "run_dir": f"/tmp/gpu/{method}",
                "per_device_train_batch_size": 64,
                "gradient_accumulation_steps": 1,
                "method": method,
                "max_steps": 6,
                "use_cpu": False,
                "bf16": True,
                "val_every": 3,
                "val_n": 64,
                "dynamic_sampling": True,
                "save_steps": 100,
            }
        )
        t0 = time.time()
        tr.train()
        lines = [json.loads(x) for x in open(f"/tmp/gpu/{method}/metrics.jsonl")]
        steps = [x for x in lines if "reward" in x]
        bad = [(x["step"], k) for x in steps for k in RECORD_KEYS if x.get(k) is not None and not math.isfinite(x[k])]
        missing = [(x["step"], k) for x in steps for k in RECORD_KEYS if k not in x]
        times[method] = [x["step_time"] for x in steps]
        rows = [x.get("length") or 0 for x in steps]
        per_step = tr.args.per_device_train_batch_size * tr.args.gradient_accumulation_steps
        med = sorted(times[method])[len(steps) // 2]
        res[method] = {
            "steps": len(steps),
            "wall_s": round(time.time() - t0, 1),
            "non_finite": bad,
            "missing": missing,
            "completions_per_s": round(per_step / med, 1) if med else None,
            "completion_tokens_per_s": round(per_step * sum(rows) / len(rows) / med, 1) if med else None,
            "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "val": [x.get("val_accuracy") for x in lines if "val_accuracy" in x],
            "step_time_median_s": sorted(times[method])[len(steps) // 2],
            "planning_ratio": steps[-1]["planning_ratio"],
            "device_of_model": str(next(tr.model.parameters()).device),
        }
        if method == "hicra":
            pad, checked, mism, per_batch, example = tr.processing_class.pad_token_id, 0, 0, [], None
            for b in seen:
                per_batch.append(0)
                mask = tr.tagger.mask(b["completion_ids"].cpu(), b["completion_mask"].cpu())
                for i in range(len(b["advantages"])):
                    A = base[_key(b["prompt_ids"][i], b["completion_ids"][i], b["completion_mask"][i], pad)]
                    want = (
                        torch.tensor(A, dtype=torch.float32) * (1 + 0.2 * mask[i].float())
                        if A >= 0
                        else torch.tensor(A, dtype=torch.float32) * (1 - 0.2 * mask[i].float())
                    )
                    cm = b["completion_mask"][i].bool().cpu()  # positions past it are padding the loss ignores
                    got = b["advantages"][i].float().cpu()
                    wrong = not torch.allclose(got[cm], want[cm], rtol=0, atol=1e-6)
                    mism += wrong
                    per_batch[-1] += wrong
                    if wrong and example is None:
                        m = mask[i].bool() & b["completion_mask"][i].bool().cpu()
                        example = {
                            "A": A,
                            "got_planning": got[m][:3].tolist(),
                            "got_other": got[~m][:3].tolist(),
                            "n_planning": int(m.sum()),
                        }
                    checked += 1
            res["hicra"].update(
                advantage_rows_checked=checked,
                advantage_rows_wrong=mism,
                wrong_per_batch=per_batch,
                wrong_example=example,
            )
    res["cpu_reference"] = "bench/bench_rl.py on the 2-core CPU: 61.7 completions/s (v2 default, docs/performance.md)"
    print(json.dumps(res))
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
