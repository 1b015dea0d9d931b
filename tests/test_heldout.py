"""hicra.heldout: a study's checkpoints scored on the world's held-out test split with the runs' own protocol."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import TINY_ROLLOUTS, sandbox_recipe


@pytest.mark.slow
def test_heldout_rescores_the_validation_exactly_and_scores_the_disjoint_test_split(private_cache, tmp_path):
    """Two GRPO and HICRA runs of 2 steps from the shipped warm start (so accuracies are not all 0). Scored on the
    validation split, every point (warm start, checkpoint-1, final) equals the run's own logged validation: the
    step uses the runs' protocol. On the test split it scores other tasks (disjoint from the validation ones),
    pairs HICRA - GRPO by seed beside the validation numbers, and a rerun reads its kept points."""
    from hicra import heldout
    from hicra.sandbox.build import SandboxConfig
    from hicra.sandbox.world import make_tasks
    from hicra.store.io import read_metrics
    from hicra.train import run

    study = tmp_path / "study"
    for method in ("grpo", "hicra"):
        for seed in (0, 1):
            recipe = sandbox_recipe(
                **{**TINY_ROLLOUTS, "max_completion_length": 160}, val_every=1, val_n=8, val_k=2, save_steps=1
            )
            run(
                {
                    **recipe,
                    "method": method,
                    "seed": seed,
                    "run_dir": str(study / f"train-{method}-s{seed}"),
                    "max_steps": 2,
                }
            )

    val = heldout.run(heldout.HeldoutConfig(run_dir=str(study), figures_dir=str(tmp_path / "fig"), split="val"))
    assert val["runs"] == 4
    for d in study.glob("train-*"):
        logged = {r["step"]: r["val_accuracy"] for r in read_metrics(d / "metrics.jsonl") if "val_accuracy" in r}
        kept = json.loads((d / "heldout" / "val.json").read_text())["points"]
        assert {int(s): a for s, a in kept.items()} == logged, d.name
    assert any(a > 0 for a in logged.values())
    per = pd.read_csv(tmp_path / "fig" / "study_heldout_runs.csv")
    assert (per.final == per.val_final).all() and (per.auc == per.val_auc).all() and (per.n_tasks == 8).all()

    test = heldout.run(heldout.HeldoutConfig(run_dir=str(study), figures_dir=str(tmp_path / "fig"), split="test"))
    wc = SandboxConfig().world_config()
    keys = lambda split: {(tuple(sorted(t.numbers)), t.target) for t in make_tasks(wc, split, 8)}  # noqa: E731
    assert not keys("test") & keys("val")
    per = pd.read_csv(tmp_path / "fig" / "study_heldout_runs.csv")
    assert per.final.between(0, 1).all() and (per.steps == 2).all()
    comp = pd.read_csv(tmp_path / "fig" / "study_heldout.csv")
    row = comp[(comp.comparison == "hicra - grpo") & (comp.endpoint == "final")].iloc[0]
    h, g = (per[per.arm == a].set_index("seed").final for a in ("hicra", "grpo"))
    assert row.n == 2 and row["mean"] == pytest.approx(100 * (h - g).mean())
    assert "test split, final" in (tmp_path / "fig" / "study_heldout.md").read_text()
    kept = {d.name: (d / "heldout" / "test.json").read_text() for d in study.glob("train-*")}
    again = heldout.run(heldout.HeldoutConfig(run_dir=str(study), figures_dir=str(tmp_path / "fig"), split="test"))
    assert again["comparisons"] == test["comparisons"]
    assert {d.name: (d / "heldout" / "test.json").read_text() for d in study.glob("train-*")} == kept


def test_heldout_refuses_what_it_cannot_score(tmp_path):
    """A split other than test/val, an unknown points mode, a folder without finished runs, a LoRA adapter."""
    from hicra import heldout

    with pytest.raises(ValueError, match="split must be test or val"):
        heldout.HeldoutConfig(split="train")
    with pytest.raises(ValueError, match="points must be curve or final"):
        heldout.HeldoutConfig(points="all")
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        heldout.find_runs(tmp_path)
    run = tmp_path / "map" / "strategy" / "train-grpo-s3"
    (run / "final").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"steps": 4}))
    (run / "params.json").write_text(json.dumps({"method": "grpo", "seed": 3}))  # arm and seed are read from it
    assert [r[:3] for r in heldout.find_runs(tmp_path / "map")] == [("strategy", "grpo", 3)]
    (run / "final" / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="LoRA adapter"):
        heldout.checkpoints(run, {}, "final")
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "hicra.heldout", "--run_dir", str(tmp_path / "empty")], capture_output=True, text=True
    )
    assert res.returncode == 2 and "error: no finished runs" in res.stderr and "Traceback" not in res.stderr


def test_the_runs_own_validation_skips_steps_without_one(tmp_path):
    """A run validates every val_every steps; its other metrics lines carry no val_accuracy (the study's runs:
    every 25 steps). The validation curve is read from the lines that have it (this raised KeyError)."""
    from hicra.heldout import _val_auc

    lines = [{"step": 0, "val_accuracy": 0.3}, {"step": 1, "reward": 0.5}, {"step": 2, "val_accuracy": 0.5}]
    lines += [{"step": 3, "reward": 0.6}, {"step": 4, "val_accuracy": 0.7}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    final, auc = _val_auc(tmp_path)
    assert final == 0.7 and abs(auc - 0.5) < 1e-12  # trapezoid over steps 0, 2, 4: (0.8 + 1.2) / 2 / 4 * 2
