"""The study profile end to end on a tiny sandbox: Ctrl-C, then a rerun that keeps finished runs and resumes
the rest; and the pre-registered statistics on hand-made numbers."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from conftest import TINY

from hicra import study

ROOT = study.resolve(".")


def test_summarise_holm_and_mde_on_hand_numbers():
    s = study.summarise([0.01, 0.03, 0.02, 0.02])
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.02)
    # sd = 0.008165, t(0.975, 3) = 3.1824, t(0.8, 3) = 0.9785
    assert s["hi"] - s["mean"] == pytest.approx(3.1824 * 0.008165 / 2, rel=1e-3)
    assert s["mde"] == pytest.approx((3.1824 + 0.9785) * 0.008165 / 2, rel=1e-3)
    assert study.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert study._verdict(0.01, 0.05) == "reproduced" and study._verdict(-0.05, -0.01) == "not reproduced"
    assert study._verdict(-0.01, 0.05) == "inconclusive" and study._verdict(-0.05, -0.01, positive=False) == \
        "reproduced"


def test_per_run_endpoints():
    rows = [{"arm": "grpo", "method": "grpo", "seed": 0, "sweep_alpha": 0.0, "step": k,
             "val_accuracy": v, "ppl_execution": 1.3 - 0.001 * k if k else None,
             "semantic_entropy": 5.0 + 0.01 * k if k else None} for k, v in ((0, 0.30), (1, None), (2, 0.35),
                                                                              (3, None), (4, 0.45))]
    df = pd.DataFrame(rows)
    for k in range(5, 31):
        df.loc[len(df)] = {"arm": "grpo", "method": "grpo", "seed": 0, "sweep_alpha": 0.0, "step": k,
                           "val_accuracy": 0.5 if k == 30 else None, "ppl_execution": 1.3 - 0.001 * k,
                           "semantic_entropy": 5.0 + 0.01 * k}
    r = study.per_run(df).iloc[0]
    assert r.final == 0.5 and r.steps == 30
    assert r.auc == pytest.approx((0.5 * (0.30 + 0.35) * 2 + 0.5 * (0.35 + 0.45) * 2 + 0.5 * (0.45 + 0.5) * 26) / 30)
    assert r.steps_to_plus10 == 4 and r.reached_plus10                   # 0.45 >= 0.30 + 0.10 first at step 4
    assert r.semantic_entropy_change == pytest.approx(0.01 * (28 - 3))   # mean of steps 26-30 minus steps 1-5


def test_alpha_slope_uses_the_seeds_run_at_every_alpha():
    """Accuracy = 0.5 - 0.1 alpha on seeds 0-1 at alpha 0, 0.2, 0.4; an extra alpha-0 seed far off the line
    (a study seed the sweep never ran) must not enter the slope, as pre-registered."""
    rows = [{"method": "grpo" if a == 0 else "hicra", "seed": s, "sweep_alpha": a, "final": 0.5 - 0.1 * a + 0.01 * s}
            for a in (0.0, 0.2, 0.4) for s in (0, 1)]
    rows.append({"method": "grpo", "seed": 7, "sweep_alpha": 0.0, "final": 0.9})
    r = study.alpha_slope(pd.DataFrame(rows))
    assert r["seeds"] == [0, 1] and r["n"] == 6 and r["slope"] == pytest.approx(-0.1)


@pytest.mark.slow
def test_study_profile_stops_on_ctrl_c_and_a_rerun_keeps_finished_runs(tmp_path, tiny_cache):
    # the shared cache holds the TINY build already, so the two runs at once never race to build it
    recipe = yaml.safe_load(open(ROOT / "configs" / "sandbox.yaml"))
    recipe.update(sandbox=TINY, num_generations=4, per_device_train_batch_size=8, gradient_accumulation_steps=1,
                  max_completion_length=24, val_n=4, n_train=16, save_steps=1, val_every=1)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    args = json.dumps({"recipe": str(tmp_path / "tiny.yaml"), "steps": 4, "arms": {"grpo": 2, "hicra": 2}})
    run = tmp_path / "study"
    cmd = [sys.executable, "-m", "hicra.pipeline", "--profile", "study", "--run", str(run), "--jobs", "2",
           "--figures_dir", str(tmp_path / "fig"), "--profile_args", args]
    env = {**os.environ, "HICRA_CACHE": str(tiny_cache)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    metrics = lambda d: [json.loads(x) for x in open(d / "metrics.jsonl")] if (d / "metrics.jsonl").exists() else []
    for _ in range(3000):  # bounded wait for a run past step 2 (not a speed check)
        if any(any(x["step"] >= 2 for x in metrics(d)) for d in run.glob("train-*")):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130 and "finished steps are kept" in out, out[-3000:]
    runs = list(run.glob("train-*"))
    finished = {d.name: (d / "metrics.jsonl").stat().st_mtime for d in runs if (d / "summary.json").exists()}
    partial = [d.name for d in runs if not (d / "summary.json").exists() and any(d.glob("checkpoint-*"))]
    assert len(finished) < 4, "the interrupt came after every run had finished"

    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for name, mtime in finished.items():  # kept, not redone
        assert (run / name / "metrics.jsonl").stat().st_mtime == mtime
        assert f"[pipeline] {name}: skipped" in res.stdout
    for name in partial:  # continued from its checkpoint
        assert "resuming from" in (run / "executed" / f"{name}.log").read_text()
    for d in run.glob("train-*"):  # every step once, none lost or duplicated
        assert [x["step"] for x in metrics(d)] == [0, 1, 2, 3, 4], d.name
    s = json.loads((run / "study.json").read_text())
    assert s["arms"] == {"grpo": 2, "hicra": 2} and s["claims"][0]["claim"].startswith("(c)")
    assert math.isfinite(s["primary"][0]["mean"])
    for name in ("study_curves", "study_effects", "fig5_methods_study"):
        assert (tmp_path / "fig" / f"{name}.png").stat().st_size > 5000, name
    assert "(c) HICRA" in (tmp_path / "fig" / "study_claims.md").read_text()
