"""Run-folder safety, typed overrides and range checks: a wrong command never costs a run or a number."""

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import TINY, TINY_ROLLOUTS, sandbox_recipe

from hicra.store.runfolder import RunFolderError, claim, last_complete_checkpoint
from hicra.train import read_recipe, run

RUN = sandbox_recipe(**TINY_ROLLOUTS, val_every=1, val_n=4, val_k=1, save_steps=1, sandbox=TINY, method="grpo")


@pytest.fixture
def cache(tiny_sandbox):
    return tiny_sandbox


def _old_run(d):
    """A finished run as a user would have it: metrics, a checkpoint, rollouts."""
    (d / "checkpoint-4").mkdir(parents=True)
    (d / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (d / "rollouts").mkdir()
    (d / "rollouts" / "step_000004.parquet").write_text("x")
    (d / "metrics.jsonl").write_text("".join(json.dumps({"step": i}) + "\n" for i in range(5)))
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def test_fresh_start_in_a_used_folder_refuses_and_keeps_everything(tmp_path):
    d = tmp_path / "run"
    before = _old_run(d)
    with pytest.raises(RunFolderError, match="--resume true.*--overwrite true"):
        run({**RUN, "run_dir": str(d), "learning_rate": "1e-4"})
    assert sorted(str(p.relative_to(d)) for p in d.rglob("*")) == before
    assert len((d / "metrics.jsonl").read_text().splitlines()) == 5


def test_overwrite_moves_the_old_run_aside(tmp_path):
    d = tmp_path / "run"
    _old_run(d)
    with claim(d, resume=False, overwrite=True):
        pass
    kept = list(d.glob("replaced-*"))
    assert len(kept) == 1 and (kept[0] / "metrics.jsonl").exists() and (kept[0] / "checkpoint-4").is_dir()
    assert not (d / "metrics.jsonl").exists()


def test_a_second_writer_is_refused_and_named(tmp_path):
    d = tmp_path / "run"
    with claim(d, resume=False, overwrite=False):
        with pytest.raises(RunFolderError, match=f"in use by pid {os.getpid()}"):
            run({**RUN, "run_dir": str(d)})
    assert not (d / ".lock").exists()  # released on exit


def test_a_stale_lock_from_a_dead_process_is_taken_over(tmp_path, capsys):
    import socket

    d = tmp_path / "run"
    d.mkdir()
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    (d / ".lock").write_text(json.dumps({"pid": p.pid, "host": socket.gethostname(), "started": "then"}))
    with claim(d, resume=False, overwrite=False):
        assert json.loads((d / ".lock").read_text())["pid"] == os.getpid()
    assert "stale lock" in capsys.readouterr().out


@pytest.fixture
def two_steps(cache):
    """A real finished run of 2 steps with a checkpoint after each."""
    d = cache / "run"
    run({**RUN, "run_dir": str(d), "max_steps": 2})
    return d


@pytest.mark.parametrize(
    "damage", ["model.safetensors", "optimizer.pt", "trainer_state.json", "rng_state.pth", "scheduler.pt"]
)
def test_resume_falls_back_past_a_truncated_or_partial_checkpoint(two_steps, damage, capsys):
    """A kill or a full disk can leave the newest checkpoint with a truncated or missing file. Complete means
    loadable, decided before anything is pruned: resume takes the previous checkpoint, says why, and the
    resumed run has every step once."""
    d = two_steps
    (d / "summary.json").unlink()  # as if killed after saving checkpoint-2
    f = d / "checkpoint-2" / damage
    if damage == "rng_state.pth":
        f.unlink()
    else:
        os.truncate(f, f.stat().st_size // 2)
    assert last_complete_checkpoint(d).name == "checkpoint-1"
    out = run({**RUN, "run_dir": str(d), "max_steps": 3, "resume": True})
    assert out["steps"] == 3 and "checkpoint-2 is incomplete" in capsys.readouterr().out
    assert [json.loads(x)["step"] for x in open(d / "metrics.jsonl")] == [0, 1, 2, 3]
    assert sorted(p.name for p in d.glob("rollouts/*.parquet")) == [f"step_00000{i}.parquet" for i in (1, 2, 3)]


def test_resume_with_settings_that_define_another_run_is_refused(two_steps):
    d = two_steps
    before = (d / "metrics.jsonl").read_text()
    with pytest.raises(RunFolderError, match=r"other settings: method 'grpo' -> 'hicra'; seed 42 -> 7"):
        run({**RUN, "run_dir": str(d), "max_steps": 3, "resume": True, "method": "hicra", "seed": 7})
    with pytest.raises(RunFolderError, match=r"learning_rate 0.0002 -> 0.001"):
        run({**RUN, "run_dir": str(d), "max_steps": 3, "resume": True, "learning_rate": 1e-3})
    assert (d / "metrics.jsonl").read_text() == before  # nothing touched
    # the CLI says it in one line, exit 2
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "hicra.train",
            "configs/sandbox.yaml",
            "--run_dir",
            str(d),
            "--resume",
            "true",
            "--method",
            "grpo",
            "--seed",
            "7",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HICRA_CACHE": str(d.parent)},
        timeout=300,
    )
    assert (
        res.returncode == 2
        and "error: --resume true would continue" in res.stderr
        and "Traceback" not in res.stderr
        and "seed 42 -> 7" in res.stderr
    ), res.stderr[-2000:]


def test_a_step_with_a_non_finite_loss_stops_the_run_and_saves_nothing_of_it(cache):
    """entropy_reg with a bonus of 1e38 overflows the loss to -inf on its first step (a legal but absurd value):
    the run stops with one line that says what to do, and writes no metrics line, checkpoint or final model
    for that step. The corrected rerun in the same folder needs no --overwrite (no step had finished)."""
    d = cache / "nan"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "hicra.train",
            "--run_dir",
            str(d),
            *_flags(RUN),
            "--max_steps",
            "2",
            "--method",
            "entropy_reg",
            "--entropy_bonus",
            "1e38",
            "--val_every",
            "0",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HICRA_CACHE": str(cache)},
        timeout=300,
    )
    err = res.stderr
    assert res.returncode == 2 and "error: step 1: loss = -inf" in err and "Last good checkpoint" in err, err[-2000:]
    assert not (d / "final").exists() and not list(d.glob("checkpoint-*")) and not (d / "summary.json").exists()
    assert not (d / "metrics.jsonl").exists() or not (d / "metrics.jsonl").read_text().strip()
    params = json.loads((d / "params.json").read_text())  # the old flag recorded under TRL's name, as trained with
    assert params["entropy_coef"] == 1e38 and "entropy_bonus" not in params
    out = run({**RUN, "run_dir": str(d), "max_steps": 1, "method": "entropy_reg"})
    assert out["steps"] == 1


def test_the_non_finite_guard_names_the_last_good_checkpoint(two_steps):
    import math

    from hicra.training.trainer import NonFiniteError, require_finite

    require_finite({"loss": 0.5, "grad_norm": 1.0}, 3, two_steps)
    with pytest.raises(NonFiniteError, match=r"step 3: grad_norm = nan.*Last good checkpoint: .*checkpoint-2"):
        require_finite({"loss": 0.0, "grad_norm": math.nan}, 3, two_steps)


def _flags(d):
    return [
        x for k, v in d.items() if k != "sandbox" for x in (f"--{k}", json.dumps(v) if not isinstance(v, str) else v)
    ] + ["--sandbox", json.dumps(TINY)]


def test_two_processes_taking_over_one_stale_lock_at_once_never_both_hold_it(tmp_path):
    """A stale lock (its pid dead) and 8 processes claiming the folder at the same moment: exactly one gets it,
    the others are refused naming it. Repeated a few times, since a race shows only sometimes."""
    import socket

    code = (
        "import sys, time; from hicra.store.runfolder import claim, RunFolderError\n"
        "t = float(sys.argv[2])\n"
        "while time.time() < t: pass\n"
        "try:\n"
        "    with claim(sys.argv[1], resume=True, overwrite=False):\n"
        "        print('HELD', flush=True); time.sleep(1.5)\n"
        "except RunFolderError as e:\n"
        "    print('REFUSED', e)\n"
    )
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for attempt in range(3):
        d = tmp_path / f"run{attempt}"
        d.mkdir()
        (d / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "then"}))
        start = time.time() + 3  # every process imported and spinning by then
        procs = [
            subprocess.Popen([sys.executable, "-c", code, str(d), str(start)], stdout=subprocess.PIPE, text=True)
            for _ in range(8)
        ]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        assert sum("HELD" in o for o in outs) == 1, outs
        assert all("HELD" in o or "in use by pid" in o for o in outs), outs


def test_an_empty_lock_left_by_a_full_disk_does_not_block_later_runs(tmp_path, capsys):
    d = tmp_path / "run"
    d.mkdir()
    (d / ".lock").write_text("")
    os.utime(d / ".lock", (time.time() - 60, time.time() - 60))
    with claim(d, resume=False, overwrite=False):
        assert json.loads((d / ".lock").read_text())["pid"] == os.getpid()
    assert "empty or unreadable lock" in capsys.readouterr().out


def test_resume_of_a_finished_run_is_a_no_op_and_lines_carry_method_and_seed(cache):
    d = cache / "run"
    first = run({**RUN, "run_dir": str(d), "max_steps": 2})
    lines = (d / "metrics.jsonl").read_text()
    stamp = (d / "final").stat().st_mtime
    time.sleep(0.01)
    again = run({**RUN, "run_dir": str(d), "max_steps": 2, "resume": True})
    assert again == first and (d / "metrics.jsonl").read_text() == lines and (d / "final").stat().st_mtime == stamp
    recs = [json.loads(x) for x in lines.splitlines()]
    assert [r["step"] for r in recs] == [0, 1, 2]
    assert all(r["method"] == "grpo" and r["seed"] == 42 for r in recs)


def test_resume_without_a_checkpoint_says_it_starts_fresh(cache, capsys):
    d = cache / "run"
    run({**RUN, "run_dir": str(d), "max_steps": 1, "resume": True, "save_steps": 100})
    assert "no complete checkpoint" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flag,value,message",
    [
        ("max_steps", "abc", "max_steps: expected an integer"),
        ("hicra_alpha", "abc", "hicra_alpha: expected a number"),
        ("resume", "maybe", "resume: expected a boolean"),
    ],
)
def test_overrides_are_typed_by_the_config_fields(flag, value, message):
    with pytest.raises(ValueError, match=message):
        read_recipe("configs/sandbox.yaml", [f"--{flag}", value])
    data = read_recipe("configs/sandbox.yaml", ["--learning_rate", "1e-4", "--resume", "true", "--max_steps", "7"])
    assert data["learning_rate"] == 1e-4 and data["resume"] is True and data["max_steps"] == 7


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--num_generations", "0"], "num_generations must be >= 2"),
        (["--hicra_alpha", "5"], r"hicra_alpha must be in \[0, 1\)"),
        (["--hicra_alpha", "-3"], r"hicra_alpha must be in \[0, 1\)"),
        (["--val_k", "0"], "val_k must be >= 1"),
        (["--temperature", "0"], "temperature must be a finite number > 0"),
        (["--entropy_coef", "nan"], "entropy_coef must be a finite number >= 0"),
        (["--entropy_bonus", "nan"], "entropy_bonus is deprecated.*\n.*entropy_coef must be a finite number >= 0"),
        (["--learning_rate", "nan"], "learning_rate must be a finite number >= 0"),
        (["--alpha_max", "5"], r"alpha_max must be in \[0, 1\)"),
        (["--max_steps", "0"], "max_steps must be >= 1"),
        (["--max_steps", "-5"], "max_steps must be >= 1"),
        (["--top_entropy_quantile", "5"], r"top_entropy_quantile must be a number in \(0, 1\]"),
        (
            ["--fork_quantile", "5"],
            r"fork_quantile is deprecated.*\n.*top_entropy_quantile must be a number in \(0, 1\]",
        ),
        (["--max_completion_length", "0"], "max_completion_length must be >= 1"),
        (["--loss_type", "grpo"], "loss_type must be 'dapo'"),
        (["--per_device_train_batch_size", "3"], r"generation_batch_size \(12\) must be divisible by num_generations"),
        # issue 38: sampling and optimiser options passed the dry run and died after the step-0 line (or, NaN
        # validation temperature, reported val_accuracy 0.0 at every step with exit 0)
        (["--val_temperature", "nan"], r"val_temperature must be a finite number >= 0"),
        (["--top_p", "0"], r"top_p must be a number in \(0, 1\]"),
        (["--top_k", "-1"], r"top_k must be an integer >= 0"),
        (["--adam_beta1", "nan"], r"adam_beta1 must be a number in \[0, 1\)"),
        (["--adam_beta2", "1.5"], r"adam_beta2 must be a number in \[0, 1\)"),
        (["--warmup_steps", "nan"], r"warmup_steps must be a finite number >= 0"),
        (["--weight_decay", "nan"], r"weight_decay must be a finite number >= 0"),
        (["--adam_epsilon", "0"], r"adam_epsilon must be a finite number > 0"),
        (["--max_grad_norm", "inf"], r"max_grad_norm must be a finite number >= 0"),
    ],
)
@pytest.mark.parametrize("dry", ["true", "false"])
def test_dry_run_fails_where_the_real_run_would(flags, message, dry, capsys, tmp_path):
    """The CLI's entry point, in this process: exit code 2 and one line that says what to fix (any other
    exception, i.e. a traceback, fails the test), in the dry run and, before anything is loaded, the real run."""
    import re

    from hicra.train import main

    with pytest.raises(SystemExit) as e:
        main(["configs/sandbox.yaml", *flags, "--dry_run", dry, "--run_dir", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()
    err = capsys.readouterr().err
    assert e.value.code == 2 and re.search(message, err), err


def test_sign_flip_needs_an_explicit_yes():
    """A recipe that allows alpha >= 1 passes the dry run and the training path honours it: token_advantages gets
    the permission (it used to drop it, so the run failed after the dry run passed)."""
    import torch

    from hicra.method.advantage import token_advantages
    from hicra.train import dry_run

    assert dry_run(read_recipe("configs/sandbox.yaml", ["--hicra_alpha", "1.5", "--allow_sign_flip", "true"]))["ok"]
    A, plan, cm = torch.tensor([-1.0]), torch.tensor([[True, False]]), torch.ones(1, 2)
    out, _ = token_advantages("hicra", A, plan, cm, alpha=1.5, allow_sign_flip=True)
    assert torch.allclose(out, torch.tensor([[0.5, -1.0]]))  # the failed plan's sign flips, as asked
    with pytest.raises(ValueError, match="allow_sign_flip"):
        token_advantages("hicra", A, plan, cm, alpha=1.5)
    from hicra.training.trainer import HICRAConfig

    with pytest.raises(ValueError, match="loss_type must be 'dapo'"):  # refused, no longer silently overwritten
        HICRAConfig(output_dir="/tmp/x", method="grpo", loss_type="grpo", use_cpu=True, report_to=[])


@pytest.mark.parametrize(
    "text,message",
    [
        ("- a\n- b\n", "expected a mapping.*list"),
        ("3\n", "expected a mapping.*int"),
        ("a: [1,\n", r"bad.yaml:\d+: malformed YAML"),
    ],
)
def test_bad_recipe_files_name_the_file(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_recipe(str(p), [])


# --------------------------------------------------------------------------
# library functions refuse inputs that would give a wrong number


def test_hicra_advantages_refuse_nan_and_sign_flips():
    import torch

    from hicra.method.advantage import hicra_advantages

    mask = torch.ones(1, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="NaN or inf"):
        hicra_advantages(torch.tensor([float("nan")]), mask)
    for alpha in (5.0, -3.0, 1.0):
        with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\)"):
            hicra_advantages(torch.tensor([-1.0]), mask, alpha)
    assert hicra_advantages(torch.tensor([-1.0]), mask, 1.5, allow_sign_flip=True).tolist() == [[0.5] * 3]


def test_pass_at_k_checks_shapes_and_counts():
    from hicra.method.metrics import pass_at_k

    with pytest.raises(ValueError, match="one entry per problem"):
        pass_at_k([4, 4], [1], 2)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(4, 5, 2)
    with pytest.raises(ValueError, match="k must be >= 1"):
        pass_at_k(4, 1, 0)
    assert pass_at_k(4, 4, 2).tolist() == [1.0]


def test_entropies_refuse_negative_counts():
    from collections import Counter

    from hicra.method.metrics import semantic_entropy

    with pytest.raises(ValueError, match=">= 0"):
        semantic_entropy(Counter({"a": 3, "b": -1}))
    assert semantic_entropy(Counter({"a": 1, "b": 1})) == 1.0


def test_tagger_refuses_a_bare_string(smollm2_tokenizer):
    from hicra.method.tagger import PlanningTagger

    with pytest.raises(ValueError, match=r"single string; pass a list of grams \(e.g. \['wait'\]\)"):
        PlanningTagger("wait", smollm2_tokenizer)
    assert PlanningTagger(["wait"], smollm2_tokenizer).grams == ["wait"]


@pytest.mark.parametrize(
    "answer", [r"9^{9^{9}}", r"9^{{9}^{9}}", "9^{99999999}", "10^{10000000000}", "99999999!", "(10^5)!", "9**9**9"]
)
def test_grader_never_hangs_in_a_worker_thread(answer):
    """math-verify's timeout works only in the main thread: answers too large to evaluate (exponent towers, huge
    exponents or factorials) must never reach sympy, whatever their shape. A watchdog thread, not a timing."""
    import threading

    from hicra.training.rewards import is_correct

    out = {}
    t = threading.Thread(target=lambda: out.update(r=is_correct(rf"\boxed{{{answer}}}", "5")), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive() and out == {"r": False}, answer


def test_grader_still_evaluates_ordinary_powers_and_factorials():
    from hicra.training.rewards import is_correct, too_big

    assert is_correct(r"\boxed{2^{10}}", "1024") and is_correct(r"\boxed{x^2+y^2}", "y^2+x^2")
    assert is_correct(r"\boxed{5!}", "120") and is_correct(r"\boxed{10^{3}}", "1000")
    assert is_correct(r"\boxed{9^{99999999}}", "9^{99999999}")  # compared textually: equal text still counts
    assert not any(map(too_big, ["10^{100}", "(2+3)!", r"e^{i\pi}", r"\frac{1}{2}", "2^{-3}"]))


def test_sg_file_errors_name_the_right_line_in_a_large_file(tmp_path):
    """The line counter is incremental now (the reader was quadratic: 9.2 s for 20k grams); it must still
    name the exact line of a bad entry deep in a big file."""
    from hicra.store.sgfile import SGFileError, read_sg_file, write_sg_file

    grams = [{"gram": f"gram {i}", "kind": "deduction"} for i in range(20_000)]
    p = write_sg_file(tmp_path / "g.json", grams, {"source": "test"})
    assert len(read_sg_file(p)["grams"]) == 20_000
    lines = p.read_text().splitlines()
    bad = next(i for i, ln in enumerate(lines) if '"gram 19000"' in ln)
    lines[bad] = lines[bad].replace('"deduction"', '"nonsense"')
    p.write_text("\n".join(lines))
    with pytest.raises(SGFileError, match=rf"g.json:{bad + 1}: gram 'gram 19000' has kind 'nonsense'"):
        read_sg_file(p)


def test_sg_file_lines_are_not_recounted_from_the_start_per_entry(tmp_path, monkeypatch):
    """The quadratic reader counted newlines from the file's start for every entry (``_line`` per gram);
    the linear one counts incrementally, so ``_line`` is not called per entry."""
    from hicra.store import sgfile

    calls = []
    real = sgfile._line
    monkeypatch.setattr(sgfile, "_line", lambda text, pos: calls.append(pos) or real(text, pos))
    p = sgfile.write_sg_file(
        tmp_path / "g.json", [{"gram": f"g {i}", "kind": "deduction"} for i in range(2000)], {"source": "test"}
    )
    assert len(sgfile.read_sg_file(p)["grams"]) == 2000 and len(calls) <= 1


def test_resume_of_a_finished_run_without_checkpoints_is_a_no_op(cache):
    d = cache / "run"
    first = run({**RUN, "run_dir": str(d), "max_steps": 1, "save_steps": 100})
    import shutil

    for c in d.glob("checkpoint-*"):  # a user who cleaned up the checkpoints of a finished run
        shutil.rmtree(c)
    lines = (d / "metrics.jsonl").read_text()
    assert run({**RUN, "run_dir": str(d), "max_steps": 1, "save_steps": 100, "resume": True}) == first
    assert (d / "metrics.jsonl").read_text() == lines and not list(d.glob("replaced-*"))


def test_dry_run_checks_the_installed_stack():
    """The dry run reports torch / transformers / trl (/ vllm) and refuses versions outside the declared ranges."""
    from hicra.train import check_stack, dry_run

    out = dry_run(read_recipe("configs/qwen3_4b_base.yaml", []))
    assert out["stack"]["trl"].startswith("1.16") and "torch" in out["stack"]
    with pytest.raises(ValueError, match=r"vllm 0.33.0 \(needs"):
        check_stack(installed={**out["stack"], "vllm": "0.33.0"})
    with pytest.raises(ValueError, match=r"trl 1.17.0 \(needs"):
        check_stack(installed={**out["stack"], "trl": "1.17.0"})
    with pytest.raises(ValueError, match="vllm is not installed"):
        check_stack(use_vllm=True, installed={k: v for k, v in out["stack"].items() if k != "vllm"})
    assert check_stack(installed={**out["stack"], "vllm": "0.31.0"})["vllm"] == "0.31.0"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["-m", "hicra.train", "{dir}", "--dry_run", "true"], "is a folder, not a YAML file"),
        (["-m", "hicra.pipeline", "--profile", "{dir}.yaml", "--dry_run", "true"], "is a folder, not a YAML file"),
        (
            ["-m", "hicra.pipeline", "--profile", "study", "--profile_args", "{{bad", "--dry_run", "true"],
            "Expecting property name",
        ),
        (
            ["-m", "hicra.pipeline", "--profile", "study", "--profile_args", "[1, 2]", "--dry_run", "true"],
            "expected a JSON object",
        ),
        (
            ["-m", "hicra.pipeline", "--profile", "study", "--profile_args", '{{"arms": 5}}', "--dry_run", "true"],
            "arms must map arm names to seed counts",
        ),
        (
            ["-m", "hicra.train", "configs/sandbox.yaml", "--sandbox", '{{"nope": 1}}', "--dry_run", "true"],
            r"unknown SandboxConfig option\(s\) \['nope'\]",
        ),
        (["-m", "hicra.train", "configs/sandbox.yaml", "--sg_file", "{bad_sg}", "--dry_run", "true"], "not UTF-8 text"),
    ],
)
def test_malformed_paths_and_arguments_get_one_line_not_a_traceback(tmp_path, argv, message):
    import re

    (tmp_path / "dir").mkdir()
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "sg.json").write_bytes(b"\xff\xfe{}")
    argv = [a.format(dir=tmp_path / "dir", bad_sg=tmp_path / "sg.json") for a in argv]
    res = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert res.returncode == 2 and re.search(message, res.stderr) and "Traceback" not in res.stderr, res.stderr[-2000:]


def test_malformed_jsonl_names_the_file_and_line(tmp_path):
    from hicra.data import _jsonl
    from hicra.grams.step import GramsConfig, collect_rollouts

    f = tmp_path / "bench.jsonl"
    f.write_text('{"problem": "1+1", "answer": "2"}\n\n{"problem": "2+2", "answer": \n')
    with pytest.raises(ValueError, match=r"bench.jsonl:3: not a JSON line"):
        _jsonl(f)
    g = tmp_path / "roll.jsonl"
    g.write_text('{"completion": "a"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"roll.jsonl:2: expected a JSON object per line, got a list"):
        collect_rollouts(GramsConfig(source="rollouts", rollouts=str(g)), progress=False)


def test_a_full_disk_during_a_checkpoint_save_says_so_and_what_to_do(cache, small_disk):
    """torch's own error on a full disk is 'unexpected pos 185216 vs 185104': the run must say 'no space left',
    exit 2, and leave no lock behind; resume skips the half-written checkpoint."""
    d = small_disk / "run"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "hicra.train",
            "--run_dir",
            str(d),
            *_flags(RUN),
            "--max_steps",
            "3",
            "--val_every",
            "0",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HICRA_CACHE": str(cache)},
        timeout=300,
    )
    assert res.returncode == 2 and "no space left on the disk of" in res.stderr and "--resume true" in res.stderr, (
        res.stderr[-2000:]
    )
    assert not (d / ".lock").exists()
    assert last_complete_checkpoint(d) is None


def test_metrics_readers_skip_a_torn_last_line_and_name_a_bad_middle_one(tmp_path, capsys):
    from hicra.figures import load_runs
    from hicra.store.io import read_metrics

    d = tmp_path / "train-grpo-s0"
    d.mkdir()
    good = "".join(json.dumps({"step": i, "val_accuracy": 0.1 * i}) + "\n" for i in range(3))
    (d / "metrics.jsonl").write_text(good + '{"step": 3, "val_acc')
    assert [r["step"] for r in read_metrics(d / "metrics.jsonl")] == [0, 1, 2]
    assert "torn last line" in capsys.readouterr().err
    assert list(load_runs([d]).step) == [0, 1, 2]
    (d / "metrics.jsonl").write_text('{"step": 0}\n{"ste\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a metrics line"):
        load_runs([d])


def test_a_metrics_line_that_does_not_fit_on_the_disk_leaves_the_file_whole(small_disk):
    import errno

    from hicra.store.io import append_jsonl

    f = small_disk / "metrics.jsonl"
    append_jsonl(f, {"step": 1})
    before = f.read_bytes()
    with open(small_disk / "filler", "wb", buffering=0) as fill:  # fill the disk to its last bytes
        try:
            while True:
                fill.write(b"x" * 512)
        except OSError:
            pass
    with pytest.raises(OSError) as e:
        append_jsonl(f, {"step": 2, "note": "y" * 20000})
    assert e.value.errno == errno.ENOSPC
    assert f.read_bytes() == before


def test_a_resumed_run_equals_an_uninterrupted_one_with_the_compact_sampler(cache):
    """rollout: compact draws from torch's global RNG, which a checkpoint saves (rng_state.pth) and resume restores:
    a run stopped after checkpoint-10 and resumed in a new process samples the same prompts and completions, step
    for step, as one that never stopped (gradient accumulation 2: a generation batch spans two micro-steps). An epoch
    here is 8 steps (16 tasks, 2 a step), so the resume lands in the second epoch, whose prompt order the sampler
    draws after the first's: a resume that forgot the earlier epochs' draws would train on other prompts (seed 2005
    of the regime map, resumed at step 125, did)."""
    flags = [
        *_flags({**RUN, "per_device_train_batch_size": 4}),
        "--gradient_accumulation_steps",
        "2",
        "--save_steps",
        "2",
        "--rollout",
        "compact",
        "--learning_rate",
        "1e-3",
    ]
    env = {**os.environ, "HICRA_CACHE": str(cache)}
    call = lambda d, *more: subprocess.run(
        [sys.executable, "-m", "hicra.train", "--run_dir", str(d), *flags, *more],  # noqa: E731
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    a, b = cache / "a", cache / "b"
    assert call(a, "--max_steps", "12").returncode == 0
    assert call(b, "--max_steps", "10").returncode == 0
    (b / "summary.json").unlink()  # as if killed after checkpoint-10
    res = call(b, "--max_steps", "12", "--resume", "true")
    assert res.returncode == 0 and "resuming from" in res.stdout + res.stderr, res.stderr[-2000:]
    keys = ("step", "reward", "length", "val_accuracy")
    lines = lambda d: [tuple(r.get(k) for k in keys) for r in map(json.loads, open(d / "metrics.jsonl"))]  # noqa: E731
    assert lines(a) == lines(b)
    import pandas as pd

    for step in (9, 11, 12):
        ra, rb = (pd.read_parquet(d / "rollouts" / f"step_{step:06d}.parquet") for d in (a, b))
        assert list(ra.prompt) == list(rb.prompt)
        assert list(ra.completion) == list(rb.completion)
