"""Every step's CLI answers --help: every option of its config with type, default and help, exit code 0; a
config a user can fix gets one error line, not a traceback."""

import dataclasses
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# step -> the config classes whose every field must be listed (TRL's own GRPOConfig fields are listed too)
STEPS = {
    "train": ["hicra.train:TrainScript", "hicra.training.trainer:HICRAConfig"],
    "figures": ["hicra.figures:FiguresConfig"],
    "grams": ["hicra.grams.step:GramsConfig"],
    "evaluate": ["hicra.evaluate:EvalConfig"],
    "error_analysis": ["hicra.error_analysis:ErrorsConfig"],
    "forks": ["hicra.forks:ForksConfig"],
    "sandbox": ["hicra.sandbox.step:BuildConfig"],
    "study": ["hicra.study:StudyConfig"],
    "pipeline": [],
    "serve": [],
    "regimes": [],
}


def _cls(spec):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("step", sorted(STEPS))
def test_every_step_answers_help_with_every_option(step):
    res = subprocess.run(
        [sys.executable, "-m", f"hicra.{step}", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    out = res.stdout
    assert out.startswith("usage:"), out[:300]
    for spec in STEPS[step]:
        cls = _cls(spec)
        own = {f.name for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
        for name in own:
            assert f"--{name}" in out, f"{step}: --{name} missing from --help"
        if step == "study":
            continue  # argparse's own help: names and defaults
        blocks = re.split(r"\n  --", out)
        listed = {b.split()[0]: b for b in blocks[1:]}
        for name in own:
            block = listed[name]
            assert "(default:" in block.splitlines()[0], f"{step} --{name}: no default"
            assert len(block.splitlines()) >= 2, f"{step} --{name}: no help line"


@pytest.mark.parametrize("step", ["figures", "error_analysis", "forks", "grams", "evaluate", "sandbox"])
def test_an_unknown_option_is_one_line_not_a_traceback(step):
    res = subprocess.run(
        [sys.executable, "-m", f"hicra.{step}", "--no_such_option", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert res.returncode == 2 and "unknown option --no_such_option" in res.stderr and "Traceback" not in res.stderr, (
        res.stderr[-2000:]
    )


def test_an_open_r1_command_line_means_the_same_as_ours():
    """TrlParser's conventions (``--config FILE``, a bare boolean ``--flag``, ``--no_flag``) give the configuration
    the project's own spelling gives, for a step and for the training recipe."""
    from hicra.grams.step import GramsConfig
    from hicra.stepkit.config import config_path, parse_cli
    from hicra.train import read_recipe

    ours = parse_cli(GramsConfig, ["--veto", "false", "--run_dir", "runs/x"])
    theirs = parse_cli(GramsConfig, ["--no_veto", "--run_dir=runs/x"])
    assert ours == theirs and ours.veto is False
    assert parse_cli(GramsConfig, ["--no_veto", "--veto"]).veto is True  # the last one wins, as in argparse

    argv = ["--config", "configs/sandbox.yaml", "--dry_run", "--no_bf16", "--seed", "3"]
    path = config_path(argv)
    assert path == "configs/sandbox.yaml"
    trl = read_recipe(path, argv)
    own = read_recipe("configs/sandbox.yaml", ["--dry_run", "true", "--bf16", "false", "--seed", "3"])
    assert trl == own and trl["dry_run"] is True and trl["bf16"] is False and trl["seed"] == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tag"], "--tag needs a value"),  # a bare flag is only a boolean's
        (["--run_dir", "--tag", "x"], "--run_dir needs a value"),
        (["a.yaml", "--config", "b.yaml"], "two recipe files"),
        (["--config"], "--config needs a YAML file"),
    ],
)
def test_a_flag_without_its_value_is_named(argv, message):
    res = subprocess.run(
        [sys.executable, "-m", "hicra.figures", *argv], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]


def test_the_readme_fits_on_a_screen_and_its_headline_is_generated_from_the_tables():
    """README ≤ 200 lines; its headline block is exactly what hicra.headline renders from figures/*.csv, so a
    re-run study that changes a table fails this test until `python -m hicra.headline` is run."""
    from hicra.headline import BEGIN, END, block

    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert text[text.index(BEGIN) : text.index(END) + len(END)] == block()
    assert "HICRA − GRPO, step-100 accuracy (primary)" in block()
    for link in ("docs/study.md", "docs/reliability.md", "docs/sandbox.md", "CHANGELOG.md"):
        assert (ROOT / link).exists(), link


def test_headline_rows_come_from_the_csvs(tmp_path):
    import pandas as pd

    from hicra.headline import rows

    pd.DataFrame([{"arm": "grpo", "seeds": 3, "final": 0.5, "final_lo": 0.48, "final_hi": 0.52}]).to_csv(
        tmp_path / "study_arms.csv", index=False
    )
    pd.DataFrame([{"method": "warm_start", "val_accuracy": 0.3}]).to_csv(
        tmp_path / "study_final_accuracy.csv", index=False
    )
    pd.DataFrame(
        [{"endpoint": "final", "arm": "hicra", "n": 3, "mean": -0.04, "lo": -0.06, "hi": -0.02, "mde": 0.03}]
    ).to_csv(tmp_path / "study_comparisons.csv", index=False)
    map_row = dict(regime="strategy", steps=600, execution_error_rate=0.03, final_n=8, final_mde=0.02)
    pd.DataFrame([{**map_row, "final_mean": 0.03, "final_lo": 0.01, "final_hi": 0.05, "grpo_plateau": True}]).to_csv(
        tmp_path / "regimes-long_map.csv", index=False
    )
    r = rows(tmp_path)
    assert r[0][2] == "+20.0 [+18.0, +22.0]" and r[1][2].startswith("−4.0 [−6.0, −2.0]") and r[1][4] == "GRPO better"
    assert r[2][0].startswith("HICRA − GRPO at step 600, regime `strategy`") and "`make regimes-long`" in r[2][1]
    assert r[2][2] == "+3.0 [+1.0, +5.0], MDE 2.0" and r[2][4] == "HICRA better"


def _modules():
    import pkgutil

    import hicra

    return sorted(m.name for m in pkgutil.walk_packages(hicra.__path__, "hicra.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("module", _modules())
def test_every_module_imports_first_in_a_fresh_interpreter(module):
    """No import circles: each module, imported first and alone, loads (a circle shows as an ImportError or a
    partially initialised module only for some import orders, so each module goes first once)."""
    res = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
