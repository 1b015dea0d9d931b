"""Runs describe themselves (issue #35): method, α and seed come from params.json, never from a folder's name; one
builder makes every profile's training command; runs from different environments are not paired unasked."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, TINY_ROLLOUTS, sandbox_recipe

from hicra import regimes, study
from hicra.environment import environment_key, record
from hicra.runinfo import read_run, train_command

ROOT = Path(__file__).resolve().parent.parent


def test_a_hicra_run_with_alpha_01_is_labelled_01_everywhere(tiny_sandbox):
    """A real `hicra` run trained with α 0.1 in a folder named train-hicra-s0 (the name says nothing of α): its
    params.json says 0.1, and the study's tables, the regime map's per-run table and the figures' loader all
    label it 0.1 (they used to read the name plus {"grpo": 0.0, "hicra": 0.2} and say 0.2)."""
    from hicra.analysis import inside
    from hicra.figures import load_runs
    from hicra.train import run

    reg = tiny_sandbox / "map" / "strategy"
    recipe = sandbox_recipe(**TINY_ROLLOUTS, val_every=1, val_n=4, save_steps=10, sandbox=TINY, max_steps=2, seed=0)
    run({**recipe, "method": "grpo", "run_dir": str(reg / "train-grpo-s0")})
    run({**recipe, "method": "hicra", "hicra_alpha": 0.1, "run_dir": str(reg / "train-hicra-s0")})
    (reg / "warm_start.json").write_text(json.dumps({"accuracy": 0.3, "execution_error_rate": 0.1}))

    info = read_run(reg / "train-hicra-s0")
    assert (info["method"], info["alpha"], info["arm"]) == ("hicra", 0.1, "hicra-a0.1")
    assert read_run(reg / "train-grpo-s0")["alpha"] == 0.0  # GRPO has no α: 0 in the sweep's terms
    assert info["environment_key"] == record()["key"] or len(info["environment_key"]) == 12

    figs = tiny_sandbox / "fig"
    study.run(study.StudyConfig(run_dir=str(reg), figures_dir=str(figs), tag="t"))
    runs = pd.read_csv(figs / "t_runs.csv").set_index("method")
    assert runs.loc["hicra", "alpha"] == 0.1 and runs.loc["hicra", "arm"] == "hicra-a0.1"
    assert set(pd.read_csv(figs / "t_comparisons.csv").arm) == {"hicra-a0.1"}
    assert list(pd.read_csv(figs / "t_runs.csv").columns[:4]) == ["seed", "arm", "method", "alpha"]

    regimes.run(str(tiny_sandbox / "map"), figures_dir=str(figs), tag="m")
    m = pd.read_csv(figs / "m_runs.csv")
    assert m[m.method == "hicra"].alpha.tolist() == [0.1] and set(m.regime) == {"strategy"}
    assert m.environment.nunique() == 1 and len(m.environment.iloc[0]) == 12

    assert set(load_runs([reg / "train-grpo-s0", reg / "train-hicra-s0"]).method) == {"grpo", "hicra-a0.1"}

    frame = study.load(reg)  # one name for the run's α in every table: `alpha` (a line's own α is `alpha_step`)
    assert set(frame[frame.method == "hicra"].alpha) == {0.1} and set(frame[frame.method == "grpo"].alpha) == {0.0}
    assert set(frame[frame.method == "hicra"].alpha_step.dropna()) == {0.1}

    # notebook 02's look inside: Â with the run's own α; a GRPO run is shown with what HICRA (the paper's α) would give
    assert "Â on planning (α 0.1)" in inside.rollouts_html(reg / "train-hicra-s0")
    assert "Â on planning (α 0.2)" in inside.rollouts_html(reg / "train-grpo-s0")
    legend = inside.plot_rollout_advantages(reg / "train-hicra-s0").axes[0].get_legend()
    assert "HICRA: Â on planning (α = 0.1)" in [t.get_text() for t in legend.get_texts()]


def test_one_builder_makes_the_study_and_the_regime_commands_and_alpha_arms_work_in_both():
    """The regime map ran `--method hicra-a0.1` (an unknown method): its commands now come from the study's builder,
    so an α arm is `--method hicra --hicra_alpha 0.1` in both, with the torch thread count set explicitly."""
    from hicra.orchestration.profiles import dry_run

    s = next(x for x in study.study_profile("runs/x", arms={"hicra-a0.1": 1}, steps=5) if x.command)
    r = next(x for x in regimes.regimes_profile("runs/y", ["v2"], arms={"hicra-a0.1": 1}, steps=5) if "train" in x.name)
    for cmd in (s.command, r.command):
        assert cmd[cmd.index("--method") + 1] == "hicra" and cmd[cmd.index("--hicra_alpha") + 1] == "0.1"
        assert cmd[cmd.index("--torch_threads") + 1] == "1"
    built = train_command("configs/sandbox.yaml", "hicra-a0.1", 0, "runs/x/train-hicra-a0.1-s0", 5, torch_threads=1)
    assert s.command == built
    assert dry_run([s, r])  # hicra.train's dry run accepts both commands
    with pytest.raises(ValueError, match="unknown method 'hicra_typo'.*hicra-a0.1"):
        train_command("configs/sandbox.yaml", "hicra_typo-a0.1", 0, "runs/z")


def _run(d, method, seed, env, acc):
    """A hand-made finished run: params.json (with ``env`` as its environment record, None for none) and metrics."""
    d.mkdir(parents=True)
    p = {"method": method, "seed": seed, **({"environment": env} if env else {})}
    (d / "params.json").write_text(json.dumps(p))
    lines = [{"step": 0, "val_accuracy": 0.3}, {"step": 10, "val_accuracy": acc}]
    (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (d / "summary.json").write_text("{}")


def test_runs_from_different_environments_are_refused_unless_told_and_the_difference_is_named(tmp_path, capsys):
    base = record()
    other = {**base, "packages": {**base["packages"], "transformers": "5.24.0"}}
    other["key"] = environment_key(other)
    _run(tmp_path / "a" / "train-grpo-s0", "grpo", 0, base, 0.5)
    _run(tmp_path / "a" / "train-hicra-s0", "hicra", 0, other, 0.6)
    with pytest.raises(ValueError, match=f"2 environments.*transformers {base['packages']['transformers']} vs 5.24.0"):
        study.load(tmp_path / "a")
    df = study.load(tmp_path / "a", mixed_environments=True)
    assert set(df.environment) == {base["key"], other["key"]}
    assert "as told (mixed_environments)" in capsys.readouterr().out

    # runs written before runs recorded an environment: one unknown environment, said, not refused
    _run(tmp_path / "b" / "train-grpo-s0", "grpo", 0, None, 0.5)
    _run(tmp_path / "b" / "train-hicra-s0", "hicra", 0, None, 0.6)
    assert set(study.load(tmp_path / "b").environment) == {"unknown"}
    assert "2 of 2" in capsys.readouterr().out

    # a folder whose name and params.json disagree is read by its params.json; two runs of one arm and seed refused
    _run(tmp_path / "c" / "train-hicra-s0", "hicra", 0, None, 0.6)
    _run(tmp_path / "c" / "train-hicra-copy-s0", "hicra", 0, None, 0.6)
    with pytest.raises(ValueError, match="same arm \\(hicra\\) and seed \\(0\\)"):
        study.load(tmp_path / "c")


def test_threads_are_part_of_the_recipe(private_cache, tmp_path, monkeypatch):
    """A sandbox build runs SFT with its config's torch_threads (default 1, as the shipped regime builds recorded)
    whatever the process has, and the default keys the same hash as before the field existed; a pipeline step alone
    in its wave gets OMP_NUM_THREADS set explicitly (it used to inherit whatever torch picked on a loaded machine)."""
    import os
    import sys

    import torch

    from hicra.orchestration import runner as R
    from hicra.sandbox.build import SandboxConfig, build

    assert SandboxConfig().key() == "3c2e9b2e86"  # data/sandbox/v2-s0-3c2e9b2e86, the shipped default warm start
    assert SandboxConfig(torch_threads=2).key() != SandboxConfig().key()  # other threads, other weights
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert build(SandboxConfig(**TINY))["torch_threads"] == 1 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    out = tmp_path / "omp.txt"
    code = f"import os, pathlib; pathlib.Path({str(out)!r}).write_text(os.environ.get('OMP_NUM_THREADS', 'unset'))"
    step = R.Step("alone", outputs=[str(out)], needs=(), command=[sys.executable, "-c", code])
    [(_, status, _, _)] = R.run_wave([step], tmp_path / "run", str(tmp_path / "fig"), lambda s: False, jobs=2)
    assert status == "ran" and out.read_text() == str(os.cpu_count() or 1)


def test_the_paper_profile_and_its_rehearsal_train_through_the_same_builder():
    """configs/profiles/paper.yaml's training steps are `train:` steps, so the GPU profile, its CPU rehearsal (an
    overlay of it), the study, the replication and the regime map all get their commands from train_command; a
    `train:` step with an unknown key is refused by name."""
    from hicra.orchestration.profiles import _train_step, load_profile

    _, steps = load_profile("paper", run="p")
    grpo = next(s for s in steps if s.name == "train-grpo")
    launcher = ["accelerate", "launch", "--config_file", "configs/accelerate/single_gpu.yaml"]
    assert grpo.command == train_command(
        "configs/qwen3_4b_base.yaml", "grpo", 0, "runs/p/train-grpo-s0", launcher=launcher
    )
    assert grpo.outputs == ["runs/p/train-grpo-s0/summary.json"]
    _, rehearsal = load_profile("paper-rehearsal")
    hicra = next(s for s in rehearsal if s.name == "train-hicra")
    assert hicra.command[hicra.command.index("--method") + 1] == "hicra" and "--resume" in hicra.command
    with pytest.raises(ValueError, match="`train` takes recipe, arm, seed, run_dir"):
        _train_step({"name": "t", "train": {"recipe": "r", "arm": "grpo", "seed": 0, "run_dir": "d", "sed": 1}})


def test_a_rerun_is_compared_to_its_run_per_seed(tmp_path):
    """Item 6's check: run 5's committed per-run table against a re-run's; equal tables say every run is exact, a
    changed seed shows its difference, and the CLI prints the count."""
    import subprocess
    import sys

    from hicra.runinfo import compare_tables
    from hicra.stepkit.config import REPO_ROOT

    run5 = REPO_ROOT / "figures" / "study-replication_runs.csv"
    assert compare_tables(run5, run5).exact.all()
    rerun = pd.read_csv(run5)
    rerun.loc[(rerun.arm == "grpo") & (rerun.seed == 1003), "final"] += 2 / 798
    t = compare_tables(run5, rerun).set_index(["arm", "seed"])
    assert not t.loc[("grpo", 1003), "exact"] and t.exact.sum() == 19
    assert t.loc[("grpo", 1003), "final_diff"] == pytest.approx(2 / 798)
    rerun.to_csv(tmp_path / "rerun.csv", index=False)
    r = subprocess.run(
        [sys.executable, "-m", "hicra.runinfo", "compare", str(run5), str(tmp_path / "rerun.csv")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and "19 of 20 runs equal to the digit" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "hicra.runinfo", "compare", str(run5), str(tmp_path / "nope.csv")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "nope.csv: not found" in r.stderr and "Traceback" not in r.stderr


def test_a_runs_alpha_is_read_without_the_torch_rules():
    """`python -m hicra.study` never imports hicra.method.advantage (the torch token rules), and its per-run table must
    still give a hicra run its α (it gave 0.0 when uses_alpha looked for the attached rule)."""
    code = (
        "import sys; from hicra.runinfo import uses_alpha, arm_label; "
        "assert 'hicra.method.advantage' not in sys.modules; "
        "print(uses_alpha('hicra'), uses_alpha('hicra_verl'), uses_alpha('grpo'), arm_label('hicra', 0.1))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["True", "True", "False", "hicra-a0.1"]


MAP = ROOT / "figures" / "regimes_map.csv"


def _variant(tmp_path, name, change):
    """A hand-made variant of the committed regime map, written as ``<name>.csv``."""
    f = tmp_path / f"{name}.csv"
    if isinstance(change, str):
        f.write_text(change)
    else:
        change(pd.read_csv(MAP)).to_csv(f, index=False)
    return str(f)


@pytest.mark.parametrize(
    "name,change,message",
    [
        ("empty", "", r"empty\.csv is empty"),
        ("header", "regime,final_mean\n", r"header\.csv is not a regime map's table \(it lacks seeds, steps"),
        (
            "noseeds",
            lambda m: m.drop(columns=["seeds"]),
            r"noseeds\.csv is not a regime map's table \(it lacks seeds\)",
        ),
        ("nofig4", lambda m: m.drop(columns=["fig4_lo"]), r"it lacks fig4_lo\)"),
        ("twice", lambda m: pd.concat([m, m.iloc[[0]]]), r"more than one row for regime\(s\) \['strategy'\]"),
        (
            "alpha",
            lambda m: m.assign(hicra_arm="hicra-a0.1"),
            r"not the same map \(strategy: hicra_arm hicra vs hicra-a0",
        ),
        ("steps", lambda m: m.assign(steps=[300, 600, 300]), r"not the same map \(v2: steps 300 vs 600\)"),
        (
            "unfinished",
            lambda m: m.assign(seeds=[float("nan"), *m.seeds[1:]]),  # its warm start only: no runs
            r"strategy has finished runs in figures/regimes_map\.csv only",
        ),
        ("runs", lambda m: pd.read_csv(ROOT / "figures" / "study_runs.csv"), "not the same kind of table"),
    ],
)
def test_comparing_maps_refuses_what_is_not_the_same_map_in_one_line(tmp_path, capsys, name, change, message):
    """``python -m hicra.runinfo compare RECORD RERUN`` on a re-run map that is broken or of another design (another
    HICRA arm, horizon, an unfinished regime, a duplicated row, a per-run table): one line that names the file and what
    differs or lacks, exit 2; never a traceback, never a comparison of different designs."""
    from hicra import runinfo

    with pytest.raises(SystemExit) as e:
        runinfo.main(["compare", "figures/regimes_map.csv", _variant(tmp_path, name, change)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].startswith("python -m hicra.runinfo: error: "), err
    assert re.search(message, err[-1]), err[-1]
    with pytest.raises(SystemExit):  # a folder is not a table
        runinfo.main(["compare", "figures/regimes_map.csv", str(tmp_path)])
    assert "not a file" in capsys.readouterr().err


def test_a_map_whose_per_run_table_cannot_give_a_value_shows_none_not_the_maps(tmp_path):
    """The headline's map rows come from the per-run table: an α arm is found without a ``hicra_arm`` column (as the
    analysis finds it), a regime with one arm or no Fig 4 values gets NaN (never the map's old number beside a
    recomputed one), and a runs table of other regimes than the map's is refused."""
    from hicra.headline import map_table

    m = pd.read_csv(MAP)
    runs = pd.read_csv(ROOT / "figures" / "study-replication_runs.csv")
    both = lambda r: pd.concat([r.assign(regime=g) for g in m.regime])  # noqa: E731  (the same runs in every regime)
    m.to_csv(tmp_path / "t_map.csv", index=False)
    alpha = runs.assign(arm=runs.arm.replace({"hicra": "hicra-a0.1"}))
    both(alpha).to_csv(tmp_path / "t_runs.csv", index=False)
    t = map_table(tmp_path, "t")
    want = study.comparisons(runs.drop(columns=["environment"]).dropna(axis=1, how="all")).set_index("endpoint")
    assert t.final_mean.tolist() == pytest.approx([want.loc["final", "mean"]] * 3)
    assert t.hicra_final.tolist() == pytest.approx([runs[runs.arm == "hicra"].final.mean()] * 3)

    both(runs.drop(columns=["planning_share_change"])).to_csv(tmp_path / "t_runs.csv", index=False)
    assert map_table(tmp_path, "t").fig4_mean.isna().all()  # no Fig 4 in the runs: none, not the map's −4.0 …
    both(runs[runs.arm == "grpo"]).to_csv(tmp_path / "t_runs.csv", index=False)
    one = map_table(tmp_path, "t")
    assert one.final_mean.isna().all() and one.hicra_final.isna().all() and one.grpo_final.notna().all()
    runs.assign(regime="v2").to_csv(tmp_path / "t_runs.csv", index=False)
    with pytest.raises(ValueError, match=r"t_map\.csv reports regimes \['execution', 'strategy', 'v2'\] with runs"):
        map_table(tmp_path, "t")
