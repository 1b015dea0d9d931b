"""Evaluation harness: Table 1 layout, bootstrap CIs, strict grading, resume, CLI."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hicra import evaluate as E

TINY = {
    "hidden_size": 32,
    "n_layers": 1,
    "n_heads": 2,
    "n_train_tasks": 40,
    "traces_per_task": 1,
    "sft_steps": 3,
    "batch_size": 8,
    "n_val": 4,
    "max_new_tokens": 24,
}


def test_graders_are_strict():
    cfg = E.EvalConfig(benchmarks=["math500"], limit=3)
    probs = E.problems(cfg, "math500")
    from hicra.data import load_benchmark

    gold = load_benchmark("math500", limit=3)[0]["answer"]
    assert probs[0]["grade"](f"so the answer is \\boxed{{{gold}}}") is True
    assert probs[0]["grade"](f"the answer is {gold}") is False  # no \boxed: 0, as in the paper's protocol
    assert probs[0]["chat"] is True


def test_lenient_grader_takes_the_last_number_and_is_reported_apart():
    from hicra.training.rewards import last_answer

    assert last_answer("so 3 + 4 = 7, and the total is 1,250.") == "1,250"
    assert last_answer("it is \\boxed{12} not 13") == "12" and last_answer("no digits") is None
    probs = E.problems(E.EvalConfig(benchmarks=["gsm8k"], limit=1), "gsm8k")
    from hicra.data import load_benchmark

    gold = load_benchmark("gsm8k", limit=1)[0]["answer"]
    assert probs[0]["lenient"](f"she pays {gold} dollars") and not probs[0]["grade"](f"she pays {gold} dollars")
    assert not probs[0]["lenient"](f"{gold} first, then 3")  # the last number counts, not any number


def test_few_shot_prompts_show_boxed_solutions_as_earlier_turns(smollm2_tokenizer):
    from hicra.training.generate import chat_prompts

    shots = E.few_shot_examples(2)
    assert len(shots) == 2 and all(a.endswith("}.") and "\\boxed{" in a for _, a in shots)
    one = chat_prompts(smollm2_tokenizer, ["What is 2+2?"])[0]
    two = chat_prompts(smollm2_tokenizer, ["What is 2+2?"], shots=shots)[0]
    assert shots[1][0] in two and shots[1][1] in two and two.endswith(one[one.index("What is 2+2?") :])
    assert two.count("<|im_start|>assistant") == 3  # two worked answers, then the model's turn
    with pytest.raises(ValueError, match="few_shot"):
        E.EvalConfig(few_shot=20)


def test_summary_and_table_layout():
    cfg = E.EvalConfig(benchmarks=["a", "b"][:0] + ["sandbox"], k={"sandbox": 2}, n_boot=500)
    scores = {
        "Base": {"sandbox": np.array([[0, 0], [1, 0], [0, 0], [1, 1]], float)},
        "HICRA": {"sandbox": np.array([[1, 0], [1, 1], [0, 0], [1, 1]], float)},
    }
    s = E.summarise(scores, cfg)
    assert s["models"]["Base"]["sandbox"]["avg_at_k"] == pytest.approx(3 / 8)
    assert s["models"]["HICRA"]["sandbox"]["avg_at_k"] == pytest.approx(5 / 8)
    d = s["delta"]["sandbox"]
    assert d["diff"] == pytest.approx(0.25) and d["ci_lo"] <= 0.25 <= d["ci_hi"]
    md = E.table_markdown(s, ["sandbox"])
    assert "| Base | 37.5 [" in md and "| Δ (HICRA − Base) | +25.0 [" in md and "sandbox (avg@2)" in md


def test_bad_config_is_explained():
    with pytest.raises(ValueError, match="unknown benchmark"):
        E.EvalConfig(benchmarks=["aime2024"])
    with pytest.raises(ValueError, match="backend"):
        E.EvalConfig(backend="sglang")


def test_cli_on_sandbox_and_resume(tmp_path, monkeypatch):
    env = {**__import__("os").environ, "HICRA_CACHE": str(tmp_path / "cache")}
    args = [
        sys.executable,
        "-m",
        "hicra.evaluate",
        "configs/eval_sandbox.yaml",
        "--run_dir",
        str(tmp_path / "ev"),
        "--figures_dir",
        str(tmp_path / "fig"),
        "--models",
        '{"Base": "sandbox", "Again": "sandbox"}',
        "--limit",
        "6",
        "--max_new_tokens",
        "24",
        "--sandbox",
        json.dumps(TINY),
    ]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(out["avg_at_k"]) == {"Base", "Again"} and out["delta"]["of"] == "Again"
    ev = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert ev["models"]["Base"]["sandbox"]["n"] == 6 and ev["k"]["sandbox"] == 4
    table = (tmp_path / "ev" / "table1.md").read_text()
    assert "Δ (Again − Base)" in table and "## Strict" in table and "## Lenient" in table
    assert set(out["lenient_avg_at_k"]) == {"Base", "Again"} and ev["lenient"]["models"]["Base"]["sandbox"]["n"] == 6
    # resume: finished cells are read back, nothing is sampled again
    from hicra.stepkit.config import load_config

    monkeypatch.setenv("HICRA_CACHE", str(tmp_path / "cache"))
    real_sampler = E.sample_transformers
    monkeypatch.setattr(E, "sample_transformers", lambda *a, **k: pytest.fail("resampled a finished cell"))
    cfg = load_config(E.EvalConfig, "configs/eval_sandbox.yaml", args[4:])
    again = E.run(cfg)
    assert again["models"]["Base"]["sandbox"]["avg_at_k"] == ev["models"]["Base"]["sandbox"]["avg_at_k"]
    # ... but a cell saved with other settings, or from a model retrained at the same path, is sampled again
    calls = []
    monkeypatch.setattr(E, "sample_transformers", lambda *a, **k: calls.append(1) or real_sampler(*a, **k))
    E.run(dataclasses.replace(cfg, max_new_tokens=20))
    assert len(calls) == 2  # both models
    weights = next(Path(E.model_path("sandbox", cfg)).glob("*.safetensors"))
    os.utime(weights, (weights.stat().st_atime, weights.stat().st_mtime + 60))
    E.run(dataclasses.replace(cfg, max_new_tokens=20))
    assert len(calls) == 4


@pytest.mark.slow
def test_smollm2_on_gsm8k_transformers_backend(tmp_path):
    cfg = E.EvalConfig(
        run_dir=str(tmp_path / "ev"),
        models={"Base": "smollm2"},
        benchmarks=["gsm8k"],
        limit=2,
        max_new_tokens=16,
        batch_size=2,
        figures_dir=str(tmp_path / "fig"),
    )
    s = E.run(cfg)
    cell = s["models"]["Base"]["gsm8k"]
    assert cell["n"] == 2 and 0 <= cell["avg_at_k"] <= 1
    import pandas as pd

    df = pd.read_parquet(tmp_path / "ev" / "scores" / "Base__gsm8k.parquet")
    assert len(df) == 2 and all(len(c) == 1 for c in df.completions)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--limit", "-1"], "limit must be >= 0"),
        (["--k", '{"sandbox": 0}'], "integers >= 1"),
        (["--k", "abc"], "k: expected a mapping"),
    ],
)
def test_eval_options_are_typed_and_range_checked(flags, message):
    from hicra.evaluate import EvalConfig
    from hicra.stepkit.config import load_config

    with pytest.raises(ValueError, match=message):
        load_config(EvalConfig, "configs/eval_sandbox.yaml", flags)
    assert load_config(EvalConfig, "configs/eval_sandbox.yaml", ["--benchmarks", "gsm8k"]).benchmarks == ["gsm8k"]
