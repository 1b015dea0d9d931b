"""The GPU `paper` profile's training step, executed: the rehearsal's own command (accelerate, 2 CPU processes,
SmolLM2-135M's HF copy with its chat template, DAPO-Math prompts, the seed SG list tagged with its tokenizer), at CI
size, and its checkpoint and final model read back the way evaluate and forks read them. `make rehearsal` runs the
whole profile (docs/scale-out.md); this is the part CI can afford."""

import json
import math
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_the_rehearsal_overlay_lists_its_differences_and_keeps_the_paper_steps():
    from hicra.profiles import load_profile

    _, paper = load_profile("paper")
    _, reh = load_profile("paper-rehearsal")
    assert [s.name for s in reh if s.name != "train-hicra-lora"] == [s.name for s in paper]
    assert [s.notebook for s in reh if s.notebook] == [s.notebook for s in paper if s.notebook]
    train = next(s for s in reh if s.name == "train-hicra")
    assert train.command[:4] == ["accelerate", "launch", "--config_file", "configs/accelerate/cpu_2proc.yaml"]
    assert "configs/qwen3_4b_base.yaml" in train.command  # the paper's recipe, overridden by listed flags only
    lora = next(s for s in reh if s.name == "train-hicra-lora")
    assert (
        lora.command[-2:] == ["--lora_r", "8"]
        and "train-hicra-lora" in lora.command[lora.command.index("--run_dir") + 1]
    )
    figs = next(s for s in reh if s.name == "03_dynamics")
    assert figs.params["tag"] == "rehearsal" and len(figs.params["runs"]) == 3


def test_the_rehearsal_trains_smollm2_through_the_paper_command(tmp_path):
    from hicra.models import load_model
    from hicra.profiles import load_profile
    from hicra.runfolder import checkpoint_problem
    from hicra.runner import command_line

    _, steps = load_profile("paper-rehearsal", run=str(tmp_path / "r"))
    step = next(s for s in steps if s.name == "train-hicra")
    cmd = command_line(step.command) + [
        "--max_steps",
        "1",
        "--num_generations",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--gradient_accumulation_steps",
        "1",
        "--max_completion_length",
        "16",
        "--context_schedule",
        "[16, 32]",
        "--n_train",
        "4",
    ]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "r" / "train-hicra-s0"
    line = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["step"] == 1 and line["method"] == "hicra" and line["alpha"] == 0.2
    assert line["planning_ratio"] is not None and math.isfinite(line["entropy_execution"])
    params = json.loads((run / "params.json").read_text())
    assert params["processes"] == 2 and params["model"] == "smollm2" and params["dataset"] == "dapo_math_17k"
    import pandas as pd

    roll = pd.read_parquet(run / "rollouts" / "step_000001.parquet")
    assert len(roll) == 4 and all(p[0]["role"] == "user" for p in roll.prompt)  # chat prompts, both ranks' rows
    assert checkpoint_problem(run / "checkpoint-1") is None
    model, tok = load_model(str(run / "final"))  # how evaluate and forks read a run's final model
    assert model.config.vocab_size == len(tok) or model.config.vocab_size >= len(tok)
