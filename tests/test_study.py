"""The study profile end to end on a tiny sandbox: Ctrl-C, then a rerun that keeps finished runs and resumes
the rest; and the pre-registered statistics on hand-made numbers."""

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from conftest import TINY

from hicra import study
from hicra.method import stats as S

ROOT = study.resolve(".")


def test_summarise_holm_and_mde_on_hand_numbers():
    s = S.summarise([0.01, 0.03, 0.02, 0.02])
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.02)
    # sd = 0.008165, t(0.975, 3) = 3.1824, t(0.8, 3) = 0.9785
    assert s["hi"] - s["mean"] == pytest.approx(3.1824 * 0.008165 / 2, rel=1e-3)
    assert s["mde"] == pytest.approx((3.1824 + 0.9785) * 0.008165 / 2, rel=1e-3)
    assert S.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert study._verdict(0.01, 0.05) == "reproduced" and study._verdict(-0.05, -0.01) == "not reproduced"
    assert (
        study._verdict(-0.01, 0.05) == "inconclusive" and study._verdict(-0.05, -0.01, positive=False) == "reproduced"
    )


def test_per_run_endpoints():
    rows = [
        {
            "arm": "grpo",
            "method": "grpo",
            "seed": 0,
            "alpha": 0.0,
            "step": k,
            "val_accuracy": v,
            "ppl_execution": 1.3 - 0.001 * k if k else None,
            "semantic_entropy": 5.0 + 0.01 * k if k else None,
        }
        for k, v in ((0, 0.30), (1, None), (2, 0.35), (3, None), (4, 0.45))
    ]
    df = pd.DataFrame(rows)
    for k in range(5, 31):
        df.loc[len(df)] = {
            "arm": "grpo",
            "method": "grpo",
            "seed": 0,
            "alpha": 0.0,
            "step": k,
            "val_accuracy": 0.5 if k == 30 else None,
            "ppl_execution": 1.3 - 0.001 * k,
            "semantic_entropy": 5.0 + 0.01 * k,
        }
    r = study.per_run(df).iloc[0]
    assert r.final == 0.5 and r.steps == 30
    assert r.auc == pytest.approx((0.5 * (0.30 + 0.35) * 2 + 0.5 * (0.35 + 0.45) * 2 + 0.5 * (0.45 + 0.5) * 26) / 30)
    assert r.steps_to_plus10 == 4 and r.reached_plus10  # 0.45 >= 0.30 + 0.10 first at step 4
    assert r.semantic_entropy_change == pytest.approx(0.01 * (28 - 3))  # mean of steps 26-30 minus steps 1-5


def test_alpha_slope_uses_the_seeds_run_at_every_alpha():
    """Accuracy = 0.5 - 0.1 alpha on seeds 0-1 at alpha 0, 0.2, 0.4; an extra alpha-0 seed far off the line
    (a study seed the sweep never ran) must not enter the slope, as pre-registered."""
    rows = [
        {"method": "grpo" if a == 0 else "hicra", "seed": s, "alpha": a, "final": 0.5 - 0.1 * a + 0.01 * s}
        for a in (0.0, 0.2, 0.4)
        for s in (0, 1)
    ]
    rows.append({"method": "grpo", "seed": 7, "alpha": 0.0, "final": 0.9})
    r = study.alpha_slope(pd.DataFrame(rows))
    assert r["seeds"] == [0, 1] and r["n"] == 6 and r["slope"] == pytest.approx(-0.1)


def test_seed_list_is_checked_and_an_arm_takes_the_first_n():
    assert study.seed_list(None, 3) == [0, 1, 2]
    assert study.seed_list([1000, 1001, 1002], 2) == [1000, 1001]
    for bad, why in (
        ([1, 1], "distinct"),
        ([1], "lists 1"),
        ("1000", "list of non-negative"),
        ([-1, 2], "non-neg"),
        ([1.5, 2], "non-neg"),
    ):
        with pytest.raises(ValueError, match=why):
            study.seed_list(bad, 2)
    steps = study.study_profile("runs/x", arms={"grpo": 2, "hicra": 1}, seeds=[1005, 1003], steps=5)
    names = [s.name for s in steps if s.command]
    assert names == ["train-grpo-s1005", "train-hicra-s1005", "train-grpo-s1003"]
    cmd = steps[2].command
    assert cmd[cmd.index("--seed") + 1] == "1003" and cmd[cmd.index("--run_dir") + 1] == "runs/x/train-grpo-s1003"


def _rollouts(d, step, rows):
    (d / "rollouts").mkdir(parents=True, exist_ok=True)
    prompt = [{"role": "user", "content": "Numbers: 3 5 7. Target: 22.\n"}]
    pd.DataFrame([{"prompt": prompt, "completion": c, "reward": r, "step": step} for c, r in rows]).to_parquet(
        d / "rollouts" / f"step_{step:06d}.parquet"
    )


def test_fig4_endpoint_is_the_oracle_planning_share_of_failures_first_vs_last_tenth(tmp_path):
    """20 steps: the first and last 10 % are steps 1-2 and 19-20. Hand-labelled completions: a wrong written
    step is a calculation failure, a wrong answer with correct steps a planning failure, 3 * 5 + 7 a success."""
    ok, calc, plan = (
        "3 * 5 = 15\n15 + 7 = 22\n\\boxed{3 * 5 + 7}",
        "3 * 5 = 16\n\\boxed{3 * 5 - 7}",
        "3 + 5 = 8\n8 + 7 = 15\n\\boxed{3 + 5 + 7}",
    )
    d = tmp_path / "train-grpo-s0"
    for step in range(1, 21):
        rows = {
            1: [(plan, 0.0), (plan, 0.0), (calc, 0.0), (ok, 1.0)],
            2: [(plan, 0.0), (ok, 1.0)],
            19: [(plan, 0.0), (calc, 0.0), (calc, 0.0)],
            20: [(calc, 0.0), (ok, 1.0)],
        }.get(step, [(plan, 0.0)])
        _rollouts(d, step, rows)
    from hicra.error_analysis import planning_share_bins

    r = planning_share_bins(d)
    assert (r["failed_first"], r["failed_last"]) == (4, 4)
    assert r["planning_share_first"] == pytest.approx(3 / 4) and r["planning_share_last"] == pytest.approx(1 / 4)
    assert r["planning_share_change"] == pytest.approx(-0.5)
    assert math.isnan(planning_share_bins(tmp_path / "no-rollouts")["planning_share_change"])
    # the study's comparison pairs the change by seed, and the Fig 4 claim reads a negative difference as HICRA's
    runs = pd.DataFrame(
        [
            {"arm": a, "seed": s, "planning_share_change": v}
            for a, s, v in (
                ("grpo", 0, -0.5),
                ("grpo", 1, -0.4),
                ("grpo", 2, -0.45),
                ("hicra", 0, -0.2),
                ("hicra", 1, -0.15),
                ("hicra", 2, -0.1),
            )
        ]
    )
    c = study.comparisons(runs)
    row = c[c.endpoint == "planning_share_change"].iloc[0]
    assert row["mean"] == pytest.approx(0.3) and row["lo"] > 0


@pytest.mark.slow
def test_study_profile_stops_on_ctrl_c_and_a_rerun_keeps_finished_runs(tmp_path, tiny_cache):
    # the shared cache holds the TINY build already, so the two runs at once never race to build it
    recipe = yaml.safe_load(open(ROOT / "configs" / "sandbox.yaml"))
    recipe.update(
        sandbox=TINY,
        num_generations=4,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        max_completion_length=24,
        val_n=4,
        n_train=16,
        save_steps=1,
        val_every=1,
    )
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    args = json.dumps(
        {"recipe": str(tmp_path / "tiny.yaml"), "steps": 4, "arms": {"grpo": 2, "hicra": 2}, "seeds": [7, 3]}
    )  # seeds as data: a replication's fresh seeds
    run = tmp_path / "study"
    cmd = [
        sys.executable,
        "-m",
        "hicra.pipeline",
        "--profile",
        "study",
        "--run",
        str(run),
        "--jobs",
        "2",
        "--figures_dir",
        str(tmp_path / "fig"),
        "--profile_args",
        args,
    ]
    env = {**os.environ, "HICRA_CACHE": str(tiny_cache)}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
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
    assert sorted(d.name for d in run.glob("train-*")) == [
        "train-grpo-s3",
        "train-grpo-s7",
        "train-hicra-s3",
        "train-hicra-s7",
    ]
    s = json.loads((run / "study.json").read_text())
    assert s["arms"] == {"grpo": 2, "hicra": 2} and s["claims"][0]["claim"].startswith("(c)")
    from hicra.error_analysis import planning_share_bins

    per = pd.read_csv(run / "study_runs.csv")  # the Fig 4 endpoint of each run, from its own rollouts
    for _, r in per.iterrows():
        want = planning_share_bins(run / f"train-{r.arm}-s{r.seed}")
        assert r.failed_first == want["failed_first"] > 0 and r.failed_last == want["failed_last"] > 0
        assert r.planning_share_change == pytest.approx(want["planning_share_change"])
        early = planning_share_bins(run / f"train-{r.arm}-s{r.seed}", until=1)  # read as if stopped at step 1
        assert early["failed_first"] == early["failed_last"] > 0 and early["planning_share_change"] == 0
    assert set(pd.read_csv(tmp_path / "fig" / "study_comparisons.csv").endpoint) >= {"final", "planning_share_change"}
    assert math.isfinite(s["primary"][0]["mean"])
    for name in ("study_curves", "study_effects", "fig5_methods_study"):
        assert (tmp_path / "fig" / f"{name}.png").stat().st_size > 5000, name
    assert "(c) HICRA" in (tmp_path / "fig" / "study_claims.md").read_text()


def _hand_made_map(tmp_path):
    """Two regimes of hand-made runs (3 seeds each of GRPO and HICRA; HICRA + 2 points in `strategy`, − 1 in
    `execution`, + 0.2 more per seed), each with a warm start's anatomy: a map's folder."""
    for name, exe, gain in (("strategy", 0.03, 0.02), ("execution", 0.30, -0.01)):
        d = tmp_path / name
        d.mkdir()
        (d / "warm_start.json").write_text(
            json.dumps(
                {
                    "accuracy": 0.35,
                    "execution_error_rate": exe,
                    "planning_error_rate": 0.6 - exe,
                    "careful_share": 0.2,
                    "tokens_mean": 50,
                }
            )
        )
        for arm in ("grpo", "hicra"):
            for seed in (0, 1, 2):
                r = d / f"train-{arm}-s{seed}"
                r.mkdir()
                top = 0.6 + 0.01 * seed + (gain + 0.002 * seed if arm == "hicra" else 0)
                lines = [{"step": s, "val_accuracy": 0.35 + (top - 0.35) * min(1, s / 200)} for s in range(0, 301, 25)]
                lines += [
                    {"step": s, "semantic_entropy": 5.0 - 0.001 * s, "length": 50, "planning_ratio": 0.3}
                    for s in range(1, 301)
                ]
                (r / "metrics.jsonl").write_text(
                    "".join(json.dumps(x) + "\n" for x in sorted(lines, key=lambda x: x["step"]))
                )
                (r / "summary.json").write_text("{}")
                (r / "params.json").write_text(json.dumps({"method": arm, "seed": seed}))  # what a run is read from


def test_regime_map_analysis_on_hand_made_runs(tmp_path):
    """hicra.regimes.run on two regimes of hand-made runs: HICRA - GRPO per regime paired by seed, the plateau
    check (last validation point minus the one 50 steps before), the warm start's anatomy beside it, the map."""
    from hicra import regimes

    _hand_made_map(tmp_path)
    res = regimes.run(str(tmp_path), figures_dir=str(tmp_path / "fig"), tag="t")
    rows = {r["regime"]: r for r in res["regimes"]}
    assert rows["strategy"]["final_mean"] == pytest.approx(0.022) and rows["strategy"]["final_n"] == 3
    assert rows["execution"]["final_mean"] == pytest.approx(-0.008)
    assert rows["strategy"]["grpo_plateau"] is True  # flat from step 200 on: last minus 50 steps before is 0
    assert rows["strategy"]["execution_error_rate"] == 0.03 and math.isnan(rows["strategy"]["fig4_mean"])
    assert (tmp_path / "fig" / "t_map.png").stat().st_size > 5000 and (tmp_path / "regimes.json").exists()

    # the same runs read up to step 150 (a longer map at an earlier horizon): three quarters of the gap, rising
    early = {r["regime"]: r for r in regimes.run(str(tmp_path), str(tmp_path / "fig"), "t150", until=150)["regimes"]}
    assert early["strategy"]["final_mean"] == pytest.approx(0.75 * 0.022) and early["strategy"]["steps"] == 150
    assert early["strategy"]["grpo_plateau"] is False and early["strategy"]["grpo_last50"] > 0
    early_runs = pd.read_csv(tmp_path / "fig" / "t150_runs.csv")
    assert early_runs[early_runs.arm == "grpo"].groupby("regime").last50.mean()["strategy"] == pytest.approx(
        early["strategy"]["grpo_last50"]
    )
    assert (tmp_path / "regimes-until150.json").exists() and (tmp_path / "fig" / "t150_map.csv").exists()
    regimes.main(["--run_dir", str(tmp_path), "--figures_dir", str(tmp_path / "cli"), "--until", "150"])
    assert [p.name for p in (tmp_path / "cli").glob("*_map.csv")] == [f"{tmp_path.name}-at150_map.csv"]  # not the map's


def test_a_study_without_a_tag_names_its_files_after_its_run_folder(tmp_path):
    """``python -m hicra.study --run_dir runs/replication-lock`` writes ``replication-lock_*``: without ``--tag`` the
    tables take the run folder's name (they took ``study``, so analysing any other study overwrote run 4's files)."""
    _hand_made_map(tmp_path)
    figs = tmp_path / "f"
    study.main(["--run_dir", str(tmp_path / "strategy"), "--figures_dir", str(figs)])
    assert json.loads((tmp_path / "strategy" / "study.json").read_text())["tag"] == "strategy"
    assert (figs / "strategy_comparisons.csv").exists() and (figs / "strategy_runs.csv").exists()
    assert not list(figs.glob("study_*"))


def test_a_map_is_recomputed_from_its_per_run_table_and_compared_with_a_map_of_record(tmp_path, capsys):
    """Run 7's tools: the headline recomputes a map's comparisons from its committed per-run table (the table, not
    the map, is the source: a stale map value is replaced), and ``runinfo compare`` puts a re-run's means against
    the map of record's values and 95 % intervals; maps of another design (horizon, regimes) are refused."""
    from hicra import headline, regimes, runinfo

    _hand_made_map(tmp_path)
    fig = tmp_path / "fig"
    regimes.run(str(tmp_path), figures_dir=str(fig), tag="t")
    written = pd.read_csv(fig / "t_map.csv")
    again = headline.map_table(fig, "t")
    for col in ("grpo_final", "hicra_final", "final_mean", "final_lo", "final_hi", "final_mde", "auc_mean", "auc_hi"):
        assert again[col].tolist() == pytest.approx(written[col].tolist(), rel=1e-12), col
    stale = written.assign(final_mean=written.final_mean + 0.5)  # a hand edit of the map: the runs table wins
    stale.to_csv(fig / "t_map.csv", index=False)
    assert headline.map_table(fig, "t").final_mean.tolist() == pytest.approx(written.final_mean.tolist())

    same = runinfo.compare_maps(written, written)
    assert len(same) == 2 * len(runinfo.COMPARED) and (same["diff"].dropna() == 0).all()
    assert same.inside.dropna().tolist() == [True] * 4  # the last step and AUC have intervals; no Fig 4 here
    moved = runinfo.compare_maps(written, stale)
    row = moved[(moved.regime == "strategy") & (moved.quantity == "HICRA − GRPO, accuracy at the last step")].iloc[0]
    assert row["diff"] == pytest.approx(0.5) and row.inside is False and row.record == pytest.approx(0.022)
    regimes.run(str(tmp_path), str(fig), "t150", until=150)
    with pytest.raises(ValueError, match=r"not the same map \(strategy: steps 300 vs 150; execution: steps 300 vs 150"):
        runinfo.compare_maps(fig / "t_map.csv", fig / "t150_map.csv")
    with pytest.raises(ValueError, match=r"not the same map \(execution has finished runs in the record only\)"):
        runinfo.compare_maps(written, written[written.regime == "strategy"])

    written.to_csv(fig / "t_map.csv", index=False)
    runs = runinfo.compare_tables(fig / "t_runs.csv", fig / "t_runs.csv")  # a map's runs: joined per regime
    assert len(runs) == 12 and runs.exact.all() and list(runs.columns[:3]) == ["regime", "arm", "seed"]
    with pytest.raises(SystemExit):  # a map against a per-run table: refused, not misread
        runinfo.main(["compare", str(fig / "t_map.csv"), str(fig / "t_runs.csv")])
    assert "not the same kind of table" in capsys.readouterr().err
    runinfo.main(["compare", str(fig / "t_map.csv"), str(fig / "t_map.csv")])
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1])["inside"] == 4 and "HICRA − GRPO, area under the curve" in "\n".join(out)


def test_a_continued_regime_run_extends_a_copy_and_keeps_the_source(tiny_sandbox):
    """regimes-long: the map's finished runs are copied (the source untouched) and resumed with a larger max_steps;
    the pipeline's training step runs the copy (it is not finished) and it continues from its last checkpoint, every
    step logged once, as one longer run; the step is done once the longer run is."""
    from conftest import TINY_ROLLOUTS, sandbox_recipe

    from hicra import regimes
    from hicra.orchestration.runner import run_step
    from hicra.store.io import read_metrics
    from hicra.train import run

    recipe = sandbox_recipe(**TINY_ROLLOUTS, val_every=1, val_n=4, save_steps=1, sandbox=TINY, method="grpo", seed=1)
    src, dst = tiny_sandbox / "map" / "strategy", tiny_sandbox / "long" / "strategy"
    run({**recipe, "run_dir": str(src / "train-grpo-s1"), "max_steps": 2})
    (src / "warm_start.json").write_text("{}")
    before = (src / "train-grpo-s1" / "metrics.jsonl").read_text()

    res = regimes.continue_runs(src, dst)
    assert res["copied"] == ["train-grpo-s1"] and (dst / "warm_start.json").exists()
    again = regimes.continue_runs(src, dst)
    assert again["copied"] == [] and again["set_aside"] == []  # a rerun copies nothing over a continued run
    # the copy is a run to continue, not a finished one: its step-2 summary is kept aside, so the pipeline's
    # training step (the profile's, done once summary.json exists) runs it instead of skipping it
    kept = json.loads((dst / "train-grpo-s1" / "summary-at-2.json").read_text())
    assert kept["steps"] == 2 and not (dst / "train-grpo-s1" / "summary.json").exists()
    profile = regimes.regimes_profile(
        run=str(tiny_sandbox / "long"), regimes=["strategy"], arms={"grpo": 1}, seeds=[1], steps=4, start_from=str(src)
    )
    step = next(s for s in profile if s.name == "strategy-train-grpo-s1")
    assert step.keep_done and step.outputs == [str(dst / "train-grpo-s1" / "summary.json")]
    todo = {**recipe, "run_dir": str(dst / "train-grpo-s1"), "max_steps": 4, "resume": True}
    cont = [sys.executable, "-c", "import json, sys; from hicra.train import run; run(json.loads(sys.argv[1]))"]
    step = dataclasses.replace(step, command=[*cont, json.dumps(todo)])  # the tiny run's recipe, the same outputs
    log = tiny_sandbox / "continue.log"
    with open(log, "w") as echo:
        assert run_step(step, tiny_sandbox / "long", str(tiny_sandbox / "fig"), echo=echo) == "ran"
    assert json.loads((dst / "train-grpo-s1" / "summary.json").read_text())["steps"] == 4
    assert f"resuming from {dst / 'train-grpo-s1' / 'checkpoint-2'}" in log.read_text()
    assert run_step(step, tiny_sandbox / "long", str(tiny_sandbox / "fig")) == "skipped"  # now it is finished
    assert [x["step"] for x in read_metrics(dst / "train-grpo-s1" / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    assert (src / "train-grpo-s1" / "metrics.jsonl").read_text() == before
    assert not (src / "train-grpo-s1" / "checkpoint-4").exists()
    assert regimes.continue_runs(src, dst)["set_aside"] == []  # the continued run's own summary stays
    assert json.loads((dst / "train-grpo-s1" / "summary.json").read_text())["steps"] == 4
    # a copy left by the old continue_runs kept the source's summary (so it counted as finished): set aside now
    stale = tiny_sandbox / "stale" / "strategy"
    shutil.copytree(src / "train-grpo-s1", stale / "train-grpo-s1")
    res = regimes.continue_runs(src, stale)
    assert res["copied"] == [] and res["set_aside"] == ["train-grpo-s1"]
    assert not (stale / "train-grpo-s1" / "summary.json").exists()
    assert json.loads((stale / "train-grpo-s1" / "summary-at-2.json").read_text())["steps"] == 2
    assert regimes.continue_runs(src, stale)["set_aside"] == []
    with pytest.raises(FileNotFoundError, match="no finished run.*FROM=scratch"):
        regimes.continue_runs(tiny_sandbox / "empty", dst)

    steps = regimes.regimes_profile(run="runs/x", regimes=["strategy"], arms={"grpo": 1}, start_from="runs/regimes")
    train = next(s for s in steps if s.name.startswith("strategy-train"))
    assert {"copy-strategy", "warm-strategy"} <= set(train.needs)
