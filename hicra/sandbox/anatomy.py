"""Anatomy of a sandbox policy's rollouts: which strategies it uses and what each pays.

The sandbox v2 diagnosis (docs/sandbox.md) rests on these numbers: how often a
policy searches carefully (checks its attempts and backtracks) versus boxing its
first attempt, how many attempts it makes, how often it runs into the length cap,
and the accuracy of each style under the model's *own* arithmetic.

    python -m hicra.sandbox.anatomy MODEL_DIR [--n 300] [--k 2] [--max_new_tokens 256]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd

from hicra.sandbox.build import SandboxConfig, load
from hicra.sandbox.world import PHRASES, WorldConfig, classify_failure, make_tasks, prompt, verify
from hicra.stepkit.steps import emit
from hicra.training.generate import sample

_CHECK = re.compile("|".join(re.escape(p) for p in PHRASES["backtracing"]["check"]), re.I)
_ATTEMPT = re.compile("|".join(re.escape(p) for slot in PHRASES["branching"].values() for p in slot), re.I)
_HINT = re.compile("|".join(re.escape(p) for s in ("hint_big", "hint_small") for p in PHRASES["deduction"][s]), re.I)


def describe(completion: str) -> dict:
    """Style features of one completion (case-insensitive phrase matches)."""
    text = completion.replace("\u2019", "'").replace("\n", " ")
    return {
        "careful": bool(_CHECK.search(text)),
        "attempts": len(_ATTEMPT.findall(text)),
        "hint": bool(_HINT.search(text)),
        "boxed": "\\boxed{" in text,
    }


def anatomy(
    model, tok, wc: WorldConfig, n: int = 300, k: int = 2, max_new_tokens: int = 256, split: str = "val", seed: int = 0
):
    """DataFrame, one row per sampled completion: style features, correctness, failure kind, truncation."""

    tasks = make_tasks(wc, split, n, allow_fewer=True)
    outs = sample(
        model,
        tok,
        [prompt(t) for t in tasks],
        n=k,
        temperature=1.0,
        max_new_tokens=max_new_tokens,
        seed=seed,
        progress=False,
    )
    rows = []
    for t, os_ in zip(tasks, outs):
        for o in os_:
            n_tok = len(tok(o, add_special_tokens=False)["input_ids"])
            rows.append(
                {
                    "task": t.id,
                    **describe(o),
                    "correct": verify(t, o),
                    "failure": classify_failure(t, o),
                    "tokens": n_tok,
                    "truncated": n_tok >= max_new_tokens - 1,
                }
            )
    return pd.DataFrame(rows)


def summarize(df) -> dict:
    """Accuracy overall and per style, style shares, attempts and truncation."""
    by = {s: df[df.careful == (s == "careful")] for s in ("careful", "hasty")}
    return {
        "n": len(df),
        "accuracy": round(float(df.correct.mean()), 3),
        "careful_share": round(float(df.careful.mean()), 3),
        "hint_share": round(float(df.hint.mean()), 3),
        **{f"accuracy_{s}": round(float(d.correct.mean()), 3) if len(d) else None for s, d in by.items()},
        "attempts_careful": round(float(by["careful"].attempts.mean()), 2) if len(by["careful"]) else None,
        "truncated": round(float(df.truncated.mean()), 3),
        "tokens_mean": round(float(df.tokens.mean()), 1),
        "tokens_p95": float(df.tokens.quantile(0.95)),
        "failures": {str(k): int(v) for k, v in df.failure.value_counts(dropna=True).items()},
    }


def main(argv=None):
    """``python -m hicra.sandbox.anatomy MODEL_DIR [--n N] [--k K] [--max_new_tokens T]``: one JSON line."""
    ap = argparse.ArgumentParser(
        prog="python -m hicra.sandbox.anatomy",
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m hicra.sandbox.anatomy ~/.cache/hicra/sandbox/<key> --n 100 "
        "(a sandbox build's folder: its summary.json and weights)",
    )
    ap.add_argument("model_dir", help="a sandbox build's folder (the warm start), or a run's final/ inside it")
    ap.add_argument("--n", type=int, default=300, help="validation tasks sampled (default: 300)")
    ap.add_argument("--k", type=int, default=2, help="samples per task (default: 2)")
    ap.add_argument("--max_new_tokens", type=int, default=None, help="completion cap (default: the build's, or 256)")
    args = ap.parse_args(argv)
    summary = Path(args.model_dir) / "summary.json"
    if not summary.exists():
        ap.error(f"{summary} does not exist: give a sandbox build's folder (python -m hicra.sandbox prints it)")
    model, tok = load(args.model_dir)
    cfg = json.loads(summary.read_text())["config"]
    wc = SandboxConfig(**cfg).world_config()
    max_new = args.max_new_tokens or cfg.get("max_new_tokens", 256)
    df = anatomy(model, tok, wc, n=args.n, k=args.k, max_new_tokens=max_new)
    emit({"model_dir": args.model_dir, **summarize(df)})


if __name__ == "__main__":
    main()
