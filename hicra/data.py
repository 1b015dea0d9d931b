"""Dataset loaders: the paper's benchmarks and training sets in one record schema.

Every loader returns a list of ``{"id", "problem", "answer", "source"}`` dicts
(plus ``"solution"`` when the file has a worked solution). The files ship in
``data/`` (provenance in ``data/README.md``): AIME24, AIME25, MATH500, AMC23,
Minerva (gold = last ``\\boxed`` of the solution), OlympiadBench, GSM8K
(train/test) and DAPO-Math-17k. Any other name goes to
``datasets.load_dataset`` for users with hub access; offline, the error lists
what ships.

    from hicra.data import load_benchmark
    rows = load_benchmark("math500", limit=50)
    python -m hicra.data            # one JSON line: rows per shipped set
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import pandas as pd

from hicra.store.io import read_jsonl
from hicra.store.names import hint
from hicra.training.rewards import last_boxed

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SHIPPED = {
    "aime24": "aime24/test.jsonl",
    "aime25": "aime25/test.parquet",
    "math500": "math500/test.jsonl",
    "amc23": "amc23/test.jsonl",
    "minerva": "minerva/test.jsonl",
    "olympiadbench": "olympiadbench/test.jsonl",
    "gsm8k": "gsm8k/{split}.jsonl",
    "dapo_math_17k": "dapo_math_17k/train.parquet",
    "rehearsal_arith": "rehearsal_arith/train.parquet",  # the CPU rehearsal's prompts (hicra.rehearsal_task)
}
TRAIN_ONLY = ("dapo_math_17k", "rehearsal_arith")  # training prompts, no test split


def _jsonl(path: Path) -> list[dict]:
    return read_jsonl(path)


def _verl(path: Path) -> list[dict]:
    out = []
    for r in pd.read_parquet(path).to_dict("records"):
        prompt = r["prompt"]
        prompt = list(prompt) if not isinstance(prompt, str) else ast.literal_eval(prompt)
        rm = r["reward_model"] if isinstance(r["reward_model"], dict) else ast.literal_eval(r["reward_model"])
        out.append({"problem": prompt[-1]["content"], "answer": str(rm["ground_truth"])})
    return out


def _olympiad_answer(r: dict) -> str:
    fa = r.get("final_answer")
    if isinstance(fa, str) and fa.startswith("["):
        fa = ast.literal_eval(fa)
    if isinstance(fa, (list, tuple)):
        fa = ", ".join(str(a) for a in fa)
    return str(fa).strip().strip("$")


def _normalise(name: str, raw: list[dict]) -> list[dict]:
    out = []
    for i, r in enumerate(raw):
        problem = r.get("problem") or r.get("question")
        if name == "minerva":
            answer = last_boxed(r["solution"])
        elif name == "olympiadbench":
            answer = _olympiad_answer(r)
        elif name == "gsm8k":
            answer = r["answer"].split("####")[-1].strip().replace(",", "")
        else:
            answer = r["answer"]
        if isinstance(answer, float) and answer.is_integer():
            answer = int(answer)
        rec = {
            "id": f"{name}-{r.get('id', r.get('unique_id', r.get('idx', i)))}",
            "problem": problem,
            "answer": str(answer),
            "source": name,
        }
        sol = r.get("solution") if name != "gsm8k" else r["answer"].split("####")[0].strip()
        if isinstance(sol, str):
            rec["solution"] = sol
        out.append(rec)
    return out


def check_dataset(name: str, model: str | None = None) -> str:
    """``name`` if a training recipe can use it with ``model``: ``sandbox`` with the sandbox model, else a shipped
    set or a hub dataset id (``owner/name``). The sandbox model trains on its own world, so any other dataset with
    it would be ignored; a name that is neither shipped nor a hub id (a typo) is refused with the nearest shipped
    name, before any model is loaded (offline, a typo would otherwise reach the hub)."""
    if model == "sandbox" or name == "sandbox":
        if model is not None and (model == "sandbox") != (name == "sandbox"):
            raise ValueError(
                f"dataset {name!r} with model {model!r}: the sandbox model trains on the sandbox's own world "
                "(dataset: sandbox) and a real model on a math set; set both (e.g. --model smollm2 --dataset gsm8k)"
            )
        return name
    key = name.lower().replace("-", "_")
    if key in SHIPPED or "/" in name:
        return name
    near = hint(key, [*SHIPPED, "sandbox"])
    raise ValueError(
        f"unknown dataset {name!r}{near}; shipped: {', '.join(SHIPPED)} (data/README.md), or a hub dataset id "
        "(owner/name)"
    )


def load_benchmark(name: str, split: str = "test", limit: int | None = None) -> list[dict]:
    """Records ``{"id", "problem", "answer", "source"}`` of a shipped set, or from the hub.

    Args:
        name: a shipped set (``hicra.data.SHIPPED``) or a hub dataset id.
        split: ``train``/``test`` for GSM8K and hub sets; the others ship one split.
        limit: keep the first ``limit`` rows (deterministic subsets).
    """
    key = name.lower().replace("-", "_")
    if key in SHIPPED:
        rel = SHIPPED[key].format(split=split)
        path = DATA_DIR / rel
        if not path.exists():
            raise FileNotFoundError(f"{name} has no split {split!r} shipped (looked for {path})")
        raw = _verl(path) if path.suffix == ".parquet" else _jsonl(path)
        rows = _normalise(key, raw)
    else:
        rows = _from_hub(name, split)
    return rows[:limit] if limit else rows


def _from_hub(name: str, split: str) -> list[dict]:
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split)
    except Exception as e:
        raise ValueError(
            f"{name!r} is not shipped and could not be loaded from the hub ({type(e).__name__}). "
            f"Shipped sets: {', '.join(SHIPPED)}"
        ) from None
    out = []
    for i, r in enumerate(ds):
        problem = r.get("problem") or r.get("question") or r.get("prompt")
        answer = r.get("answer") or r.get("final_answer") or last_boxed(r.get("solution", ""))
        if problem is None or answer is None:
            raise ValueError(f"{name}: row {i} has no problem/question or answer/solution field")
        out.append({"id": f"{name}-{i}", "problem": str(problem), "answer": str(answer), "source": name})
    return out


def main(argv=None) -> None:
    """``python -m hicra.data``: rows per shipped set, one JSON line (a check that the files load)."""
    argparse.ArgumentParser(
        prog="python -m hicra.data",
        description="Count the rows of every shipped dataset (data/README.md) and print them as one JSON line.",
        epilog="shipped: " + ", ".join(SHIPPED) + '. In Python: load_benchmark("math500", limit=50)',
    ).parse_args(argv)
    counts = {
        n: len(load_benchmark(n, split=s))
        for n, s in [(k, "test") for k in SHIPPED if k not in TRAIN_ONLY]
        + [("gsm8k", "train")]
        + [(k, "train") for k in TRAIN_ONLY]
    }
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
