"""The CPU rehearsal's training prompts: easy arithmetic in DAPO-Math-17k's format, chosen by a pilot (issue #37).

Why: SmolLM2-135M-Instruct answers no DAPO-Math-17k problem in 64 tokens, so in a rehearsal on those prompts every
reward and every advantage is 0, GRPO and HICRA are the same run, and HICRA's ``Â = A + α|A|`` (paper §3) never
acts. The rehearsal needs prompts on which the model is right in some, not all, completions of a group.

How: ``candidates`` writes easy word problems and sums from fixed templates (seeded), each as a DAPO-Math-17k row
(verl parquet: ``prompt`` = [{role: user, content: problem}], ``reward_model`` = {ground_truth, style: rule},
``data_source``, ``ability``, ``extra_info``), so ``hicra.data`` loads it as it loads DAPO and ``hicra.train`` renders
it with the same template (chat template, problem + its boxed instruction) and grades it with the same reward
(``hicra.rewards.accuracy_reward``: strict last ``\\boxed{}`` + math-verify). ``pilot`` samples ``k`` completions
of each with that prompt (temperature 1, the rehearsal's 64 tokens) and keeps the problems whose pilot accuracy
lies in ``[lo, hi]``, those nearest 0.5 first (a group of 4 on a problem solved half the time has mixed rewards with
probability 0.875). The pilot's numbers go into ``extra_info``. Status: no candidate format has earned SmolLM2 the
strict reward often enough yet, so no set ships and the rehearsal still trains on DAPO-Math-17k (the probes so far:
``data/README.md``).

    python -m hicra.rehearsal_task --out data/rehearsal_arith/train.parquet     # the pilot (minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import random
import time

import pandas as pd

from hicra.generate import sample
from hicra.io import write_parquet
from hicra.models import load_model
from hicra.rewards import is_correct

# the user turn hicra.train.build_trainer builds from a row's problem (kept equal to it)
INSTRUCTION = "\nPut your final answer within \\boxed{}."

NAMES = ["Tom", "Anna", "Sam", "Lily", "Ben", "Mia", "Max", "Emma"]
ITEMS = ["apples", "books", "marbles", "pencils", "cookies", "stickers"]

# --------------------------------------------------------------------------
# candidates


def _problem(kind: str, rng: random.Random) -> tuple[str, int]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 12), rng.randint(2, 9)
    if kind == "sum":
        return f"What is ${a} + {b}$?", a + b
    if kind == "more":
        return f"{name} has {a} {item}. {name} gets {b} more {item}. How many {item} does {name} have now?", a + b
    if kind == "less":
        a = a + b
        return f"{name} has {a} {item} and gives {b} of them away. How many {item} are left?", a - b
    if kind == "times":
        return f"There are {a} bags with {b} {item} in each bag. How many {item} are there in total?", a * b
    raise ValueError(f"unknown kind {kind!r}")


KINDS = ("sum", "more", "less", "times")
# how a problem asks for its answer, beside the trainer's own instruction (the only framing that scored in a probe)
FRAMINGS = {"plain": "{}", "boxed_hint": "{} Write only the result, in the form \\boxed{{result}}."}


def candidates(n: int, seed: int = 0, framing: str = "plain") -> list[dict]:
    """``n`` distinct problems (kinds in turn), as DAPO-Math-17k rows."""
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {sorted(FRAMINGS)}; got {framing!r}")
    rng, rows, seen = random.Random(seed), [], set()
    while len(rows) < n:
        kind = KINDS[len(rows) % len(KINDS)]
        text, answer = _problem(kind, rng)
        text = FRAMINGS[framing].format(text)
        if text in seen:
            continue
        seen.add(text)
        rows.append(
            {
                "data_source": "hicra/rehearsal_arith",
                "prompt": [{"role": "user", "content": text}],
                "ability": "MATH",
                "reward_model": {"ground_truth": str(answer), "style": "rule"},
                "extra_info": {"index": len(rows), "kind": kind},
            }
        )
    return rows


# --------------------------------------------------------------------------
# the pilot


def pilot(
    rows: list[dict], model: str = "smollm2", k: int = 8, max_new_tokens: int = 64, temperature: float = 1.0, seed=0
) -> list:
    """Pilot accuracy of each row: ``k`` completions with the trainer's prompt and temperature, graded strictly."""

    lm, tok = load_model(model)
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": r["prompt"][0]["content"] + INSTRUCTION}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for r in rows
    ]
    outs = sample(
        lm, tok, prompts, n=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, progress=False
    )
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
    ap.add_argument("--out", required=True, help="the parquet to write (data/rehearsal_arith/train.parquet)")
    ap.add_argument("--n", type=int, default=64, help="candidate problems")
    ap.add_argument("--k", type=int, default=8, help="pilot completions per problem")
    ap.add_argument("--keep", type=int, default=24, help="problems kept")
    ap.add_argument("--lo", type=float, default=0.125, help="lowest pilot accuracy kept")
    ap.add_argument("--hi", type=float, default=0.875, help="highest pilot accuracy kept")
    ap.add_argument("--max_new_tokens", type=int, default=64, help="the rehearsal's completion cap")
    ap.add_argument("--temperature", type=float, default=1.0, help="the rehearsal's sampling temperature")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--framing", default="plain", choices=sorted(FRAMINGS), help="how a problem asks for its answer")
    a = ap.parse_args(argv)
    if a.n < 1 or a.k < 2 or a.keep < 1 or not 0 <= a.lo <= a.hi <= 1:
        ap.error("need n >= 1, k >= 2, keep >= 1 and 0 <= lo <= hi <= 1")

    t = time.time()
    rows = candidates(a.n, a.seed, a.framing)
    acc = pilot(rows, k=a.k, max_new_tokens=a.max_new_tokens, temperature=a.temperature, seed=a.seed)
    kept = choose(rows, acc, a.keep, a.lo, a.hi)
    if not kept:
        raise SystemExit(f"error: no candidate had a pilot accuracy in [{a.lo}, {a.hi}]; accuracies: {acc}")
    write_parquet(a.out, pd.DataFrame(kept))
    by_kind = {}
    for x, r in zip(acc, rows):
        by_kind.setdefault(r["extra_info"]["kind"], []).append(x)
    print(
        json.dumps(
            {
                "out": a.out,
                "candidates": len(rows),
                "kept": len(kept),
                "k": a.k,
                "temperature": a.temperature,
                "framing": a.framing,
                "pilot_accuracy_by_kind": {kd: round(sum(v) / len(v), 3) for kd, v in by_kind.items()},
                "kept_accuracy": [r["extra_info"]["pilot_accuracy"] for r in kept],
                "accuracy_all": acc,
                "seconds": round(time.time() - t),
            }
        )
    )


if __name__ == "__main__":
    main()
