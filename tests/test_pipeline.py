"""The figure pipeline: skips unchanged steps, reruns changed ones, and names the failing notebook and cell."""

import json
import os

import nbformat
import pytest
import yaml

from hicra import pipeline as P
from hicra.orchestration import runner as R


def _nb(path, body):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell('out = ""\nfigures_dir = "figures"\nsource = ""', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nbformat.write(nb, path)
    return str(path)


def test_skips_unchanged_and_reruns_changed(tmp_path):
    src = tmp_path / "input.txt"
    src.write_text("1")
    nb = _nb(tmp_path / "copy.ipynb", "import pathlib\npathlib.Path(out).write_text(pathlib.Path(source).read_text())")
    out = tmp_path / "out.txt"
    step = R.Step("copy", nb, {"out": str(out), "source": str(src)}, [str(src)], [str(out)])
    run = tmp_path / "run"
    assert R.run_step(step, run, str(tmp_path / "fig")) == "ran"
    assert R.run_step(step, run, str(tmp_path / "fig")) == "skipped"
    src.write_text("2")  # an input changed
    assert R.run_step(step, run, str(tmp_path / "fig")) == "ran" and out.read_text() == "2"
    out.unlink()  # an output disappeared
    assert R.run_step(step, run, str(tmp_path / "fig")) == "ran"
    step.params = {**step.params, "source": str(tmp_path / "other.txt")}  # a parameter changed
    (tmp_path / "other.txt").write_text("3")
    assert R.run_step(step, run, str(tmp_path / "fig")) == "ran" and out.read_text() == "3"
    assert R.run_step(step, run, str(tmp_path / "fig")) == "skipped"
    assert R.run_step(step, run, str(tmp_path / "fig"), force=True) == "ran"
    assert (run / "executed" / "copy.ipynb").exists() and json.loads((run / ".stamps" / "copy.json").read_text())["key"]


def test_failure_names_notebook_and_cell(tmp_path):
    nb = _nb(tmp_path / "broken.ipynb", "x = 1\nraise ValueError('the sandbox cache is corrupt')")
    step = R.Step("broken", nb, {"out": str(tmp_path / "o")}, [], [str(tmp_path / "o")])
    with pytest.raises(R.StepFailed) as e:
        R.run_step(step, tmp_path / "run", str(tmp_path / "fig"))
    msg = str(e.value)
    assert (
        "broken.ipynb failed in cell 2" in msg and "ValueError: the sandbox cache is corrupt" in msg and "x = 1" in msg
    )
    assert not (tmp_path / "run" / ".stamps" / "broken.json").exists()


def test_profiles_are_well_formed():
    """Every shipped profile (configs/profiles/*.yaml) loads into uniquely named steps whose notebooks or CLI
    modules exist and that declare their outputs."""
    from hicra.orchestration.profiles import load_profile, profile_names

    assert {"sandbox", "smollm-cpu", "study", "study-quick", "study-alpha"} <= set(profile_names())
    for name in profile_names():
        _, steps = load_profile(name)
        assert len({s.name for s in steps}) == len(steps)
        for s in steps:
            if s.command:  # a CLI step: `python -m` or `accelerate launch ... -m` a module of this package
                assert s.command[0] in ("python", "accelerate") and "-m" in s.command, s.command
                module = s.command[s.command.index("-m") + 1]
                assert (R.REPO_ROOT / (module.replace(".", "/") + ".py")).exists(), s.command
            else:
                assert (R.REPO_ROOT / "notebooks" / s.notebook).is_file(), s.notebook
            assert s.outputs, s.name


def test_independent_steps_run_together_and_a_failure_spares_its_siblings(tmp_path):
    """Steps with no dependency between them run at once (A waits for a file B writes, so one after
    the other could not pass), each kernel gets its share of the threads, and a failing sibling
    neither stops the others nor loses their stamps."""
    flag = tmp_path / "b_started"
    a = _nb(
        tmp_path / "a.ipynb",
        "import os, pathlib, time\n"
        f"for _ in range(600):\n    if pathlib.Path({str(flag)!r}).exists(): break\n    time.sleep(0.1)\n"
        f"else:\n    raise RuntimeError('B never started while A ran')\n"
        "pathlib.Path(out).write_text(os.environ.get('OMP_NUM_THREADS', 'unset'))",
    )
    b = _nb(
        tmp_path / "b.ipynb", f"import pathlib\npathlib.Path({str(flag)!r}).touch()\npathlib.Path(out).write_text('b')"
    )
    c = _nb(tmp_path / "c.ipynb", "raise ValueError('c is broken')")
    steps = [
        R.Step("a", a, {"out": str(tmp_path / "a.txt")}, [], [str(tmp_path / "a.txt")], needs=()),
        R.Step("b", b, {"out": str(tmp_path / "b.txt")}, [], [str(tmp_path / "b.txt")], needs=()),
        R.Step("c", c, {"out": str(tmp_path / "c.txt")}, [], [str(tmp_path / "c.txt")], needs=()),
        R.Step("d", b, {"out": str(tmp_path / "d.txt")}, [], [str(tmp_path / "d.txt")]),
    ]
    assert [[s.name for s in w] for w in R.waves(steps)] == [["a", "b", "c"], ["d"]]
    omp_before = os.environ.get("OMP_NUM_THREADS")  # a user's own setting is respected
    results = R.run_wave(R.waves(steps)[0], tmp_path / "run", str(tmp_path / "fig"), lambda s: False, jobs=3)
    status = {s.name: st for s, st, _, _ in results}
    assert status == {"a": "ran", "b": "ran", "c": "failed"}
    assert "c.ipynb failed in cell 2" in str(results[2][3])
    assert (tmp_path / "a.txt").read_text() == (omp_before or str(max(1, (os.cpu_count() or 1) // 3)))
    assert (tmp_path / "run" / ".stamps" / "a.json").exists() and (tmp_path / "run" / ".stamps" / "b.json").exists()
    assert os.environ.get("OMP_NUM_THREADS") == omp_before, "the pipeline's setting leaked"


def test_waves_reject_unknown_needs():
    s = R.Step("x", "00_sandbox.ipynb", {}, [], ["o"], needs=("missing",))
    with pytest.raises(ValueError, match="x needs \\['missing'\\]"):
        R.waves([s])


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_interrupt_stops_running_steps_and_their_kernels(tmp_path, inherited):
    """SIGINT to the pipeline process alone (as from a batch scheduler) stops the steps running together:
    the pipeline exits, and no notebook kernel is left running. Also when the pipeline inherits SIGINT as
    ignored, as a script's background job does (`make test &`)."""
    import signal
    import subprocess
    import sys
    import time

    body = "import os, pathlib, time\npathlib.Path(out).write_text(str(os.getpid()))\ntime.sleep(600)"
    nbs = [_nb(tmp_path / f"sleep{i}.ipynb", body) for i in range(2)]
    steps = [
        dict(
            name=f"s{i}",
            notebook=nb,
            params={"out": str(tmp_path / f"pid{i}")},
            inputs=[],
            outputs=[str(tmp_path / f"never{i}")],
            needs=[],
        )
        for i, nb in enumerate(nbs)
    ]
    driver = (
        "import json, sys\nfrom pathlib import Path\nfrom hicra.orchestration import runner as R\n"
        f"steps = [R.Step(**s) for s in json.loads({json.dumps(json.dumps(steps))})]\n"
        f"R.run_wave(steps, Path({str(tmp_path / 'run')!r}), {str(tmp_path / 'fig')!r}, lambda s: False, jobs=2)\n"
    )
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if inherited == "ignored" else None
    proc = subprocess.Popen(
        [sys.executable, "-c", driver],
        start_new_session=True,
        preexec_fn=ignore,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pidfiles = [tmp_path / "pid0", tmp_path / "pid1"]
    for _ in range(1200):  # kernels start (bounded wait, not a speed check)
        if all(p.exists() and p.read_text() for p in pidfiles):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the two steps did not start: " + proc.communicate()[0][-2000:])
    kernels = [int(p.read_text()) for p in pidfiles]
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=180)[0]
    assert proc.returncode != 0 and "interrupted" in out
    for i in range(2):  # each step process was stopped, not killed
        assert "KeyboardInterrupt" in (tmp_path / "run" / "executed" / f"s{i}.log").read_text()
    for _ in range(300):
        alive = [k for k in kernels if _alive(k)]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive, f"kernels {alive} still running after the pipeline was interrupted"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited; only its parent has not reaped it
        return open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_running_steps_report_progress(tmp_path, capsys):
    """A long step is not silent: the pipeline prints the running steps, with the step count of a JSONL
    progress file when the step declares one."""
    metrics = tmp_path / "metrics.jsonl"
    body = (
        "import json, pathlib, time\n"
        f"for k in range(1, 4):\n    time.sleep(1.5)\n"
        f"    with open({str(metrics)!r}, 'a') as f: f.write(json.dumps({{'step': k}}) + '\\n')\n"
        "pathlib.Path(out).write_text('done')"
    )
    step = R.Step(
        "train",
        _nb(tmp_path / "t.ipynb", body),
        {"out": str(tmp_path / "o")},
        [],
        [str(tmp_path / "o")],
        progress=(str(metrics), 3),
    )
    [(_, status, _, err)] = R.run_wave(
        [step], tmp_path / "run", str(tmp_path / "fig"), lambda s: False, jobs=1, tick=0.5
    )
    assert status == "ran" and err is None
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[pipeline] running: train ")]
    assert lines and any("(step 2/3)" in ln or "(step 1/3)" in ln for ln in lines), lines


def test_unknown_step_names_are_refused_with_the_valid_ones():
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "hicra.pipeline", "--only", "nosuchstep"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and "unknown step(s) ['nosuchstep']" in r.stderr and "02_train_hicra" in r.stderr


def test_only_runs_just_the_named_step(tmp_path):
    """`--only NAME` runs that step of the profile and no other (it was refused as unknown: an operator-precedence
    slip in the name check, found by re-running one step of the rehearsal)."""
    nbs = {n: _nb(tmp_path / f"{n}.ipynb", f"import pathlib\npathlib.Path(out).write_text('{n}')") for n in "ab"}
    steps = "".join(
        f"  - name: {n}\n    notebook: {nbs[n]}\n    params: {{out: '${{run}}/{n}.txt'}}\n    inputs: []\n"
        f"    outputs: ['${{run}}/{n}.txt']\n"
        for n in "ab"
    )
    import subprocess
    import sys

    (tmp_path / "two.yaml").write_text(f"run: two\nsteps:\n{steps}")
    cmd = [
        sys.executable,
        "-m",
        "hicra.pipeline",
        "--profile",
        str(tmp_path / "two.yaml"),
        "--run",
        str(tmp_path / "r"),
    ]
    cmd += ["--figures_dir", str(tmp_path / "fig")]
    res = subprocess.run([*cmd, "--only", "b"], capture_output=True, text=True, timeout=300, cwd=R.REPO_ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "r" / "b.txt").read_text() == "b" and not (tmp_path / "r" / "a.txt").exists()


def test_a_profile_file_of_ones_own(tmp_path):
    """A user's profile YAML: ${run} is the run folder; a bad profile is refused with what to fix."""
    from hicra.orchestration.profiles import load_profile

    nb = _nb(tmp_path / "w.ipynb", "import pathlib\npathlib.Path(out).write_text('x')")
    (tmp_path / "mine.yaml").write_text(
        f"run: mine\nsteps:\n  - name: w\n    notebook: {nb}\n"
        "    params: {out: '${run}/w.txt'}\n    inputs: []\n"
        "    outputs: ['${run}/w.txt']\n"
    )
    run_dir, [step] = load_profile(str(tmp_path / "mine.yaml"), run=str(tmp_path / "r"))
    assert run_dir == tmp_path / "r" and step.params["out"] == f"{tmp_path}/r/w.txt"
    (tmp_path / "bad.yaml").write_text("run: x\nsteps: []\nfrom: hicra.study:study_profile\n")
    with pytest.raises(ValueError, match="either `steps` or `from`"):
        load_profile(str(tmp_path / "bad.yaml"))
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        load_profile("nope")


def test_every_profile_dry_runs_and_a_bad_parameter_names_its_step(tmp_path, capsys):
    """`--dry_run true` validates each step of each shipped profile (the GPU `paper` profile included) on this
    CPU machine without loading a model; a parameter its notebook does not take fails, naming the step."""
    from hicra.orchestration.profiles import load_profile, profile_names

    assert "paper" in profile_names()
    for name in profile_names():
        P.main(["--profile", name, "--dry_run", "true"])
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert out["ok"] and out["dry_run"] and len(out["steps"]) == len(load_profile(name)[1]), name
    (tmp_path / "bad.yaml").write_text(
        open(R.REPO_ROOT / "configs/profiles/paper.yaml").read().replace("n_prompts: 128", "n_promts: 128")
    )
    with pytest.raises(SystemExit) as e:
        P.main(["--profile", str(tmp_path / "bad.yaml"), "--dry_run", "true"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "step 05_fork_tokens" in err and "n_promts" in err, err


def test_a_dry_run_executes_nothing_from_a_notebook(tmp_path, capsys):
    """The dry run reads a notebook's parameters cell by parsing it: code planted there does not run, and the
    step is refused, naming the line."""
    import nbformat

    nb = nbformat.read(R.REPO_ROOT / "notebooks" / "07_study.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    planted = tmp_path / "planted"
    cell.source += f"\nimport pathlib\npathlib.Path({str(planted)!r}).write_text('ran')\n"
    nbformat.write(nb, tmp_path / "07_study.ipynb")
    (tmp_path / "p.yaml").write_text(
        f"run: {tmp_path}/r\nsteps:\n  - name: s\n"
        f"    notebook: {tmp_path}/07_study.ipynb\n"
        f"    params: {{tag: x}}\n    inputs: []\n    outputs: []\n"
    )
    with pytest.raises(SystemExit) as e:
        P.main(["--profile", str(tmp_path / "p.yaml"), "--dry_run", "true"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "only `name = <literal>` assignments" in err and "import pathlib" in err, err
    assert not planted.exists()
    from hicra.orchestration.profiles import literal_assignments

    assert literal_assignments("a = 1\nb = {'x': [1, None]}\nc = -2.5\n") == {"a": 1, "b": {"x": [1, None]}, "c": -2.5}


def test_results_page_shows_claims_a_and_b_with_their_intervals(tmp_path):
    """The results page carries each fork-token row's entropy gap and shares, with the step's bootstrap interval
    where it computed one, and a dash where a row lacks a value."""
    from hicra.orchestration.report import results_markdown

    (tmp_path / "forks").mkdir()
    rows = [
        {
            "model": "SmolLM2",
            "stage": "instruct",
            "texts": "solutions",
            "entropy_gap": 1.127,
            "planning_is_fork": 0.688,
            "fork_is_planning": 0.021,
            "ci": {"entropy_gap": [0.806, 1.469], "planning_is_fork": [0.545, 0.773]},
        },
        {"model": "GRPO", "stage": "after RL", "planning_is_fork": 0.394, "fork_is_planning": 0.658},
    ]
    (tmp_path / "forks" / "forks.json").write_text(json.dumps({"rows": rows}))
    md = results_markdown("x", tmp_path, [{"step": "05_fork_tokens", "status": "ran", "seconds": 1.0}])
    assert "| SmolLM2 | instruct | solutions | 1.127 [0.806, 1.469] | 0.688 [0.545, 0.773] | 0.021 |" in md
    assert "| GRPO | after RL | samples | – | 0.394 | 0.658 |" in md
    (tmp_path / "errors").mkdir()  # an off-format judge: no failure with a cause, no share (the rehearsal's)
    errors = {"n_failed": 8, "source": "LLM judge", "planning_share": {"grpo": {"first": None, "last": None}}}
    (tmp_path / "errors" / "errors.json").write_text(json.dumps(errors))
    md = results_markdown("x", tmp_path, [])
    assert "## Error analysis (LLM judge)" in md and "grpo n/a -> n/a" in md


def test_a_kernel_that_dies_starting_is_started_again(tmp_path, monkeypatch):
    """Kernels started together can take each other's TCP port, and the loser dies before its first cell. The step
    starts it again (no cell had run) and says so in its log; a real failure in a cell is not retried."""
    import socket

    import jupyter_client.connect as jc

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()  # a port another process holds, handed to the first kernel as its control port
    real, calls = jc.write_connection_file, []

    def first_gets_a_taken_port(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            kw["control_port"] = held.getsockname()[1]
        return real(*args, **kw)

    monkeypatch.setattr(jc, "write_connection_file", first_gets_a_taken_port)
    out = tmp_path / "out.txt"
    step = R.Step(
        "again",
        _nb(tmp_path / "w.ipynb", "import pathlib\npathlib.Path(out).write_text('ok')"),
        {"out": str(out)},
        [],
        [str(out)],
    )
    log = tmp_path / "step.log"
    with open(log, "w") as echo:
        assert R.run_step(step, tmp_path / "run", str(tmp_path / "fig"), echo=echo) == "ran"
    held.close()
    assert out.read_text() == "ok" and len(calls) >= 2
    assert "died while starting" in log.read_text() and "starting it again (2/3)" in log.read_text()


def test_steps_die_with_a_pipeline_killed_by_sigkill(tmp_path):
    """kill -9 of the pipeline cannot stop its steps by a signal handler; each step (and what it starts) watches
    its parent and stops when it is gone, instead of training on for hours. Bounded waits, not timings."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import os, sys, time; from hicra.stepkit.config import install_signal_handlers; install_signal_handlers(); "
        f"open({str(tmp_path / 'pid')!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    )
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump(
            {
                "run": str(tmp_path / "r"),
                "steps": [
                    {
                        "name": "long",
                        "notebook": "",
                        "params": {},
                        "inputs": [],
                        "outputs": [str(tmp_path / "never")],
                        "command": ["python", "-c", code],
                    }
                ],
            }
        )
    )
    pipe = subprocess.Popen(
        [sys.executable, "-m", "hicra.pipeline", "--profile", str(tmp_path / "p.yaml")],
        cwd=R.REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        if (tmp_path / "pid").exists() and (tmp_path / "pid").read_text():
            break
        time.sleep(0.1)
    pid = int((tmp_path / "pid").read_text())
    pipe.send_signal(signal.SIGKILL)
    pipe.wait()

    def alive(p):
        try:
            os.kill(p, 0)
        except ProcessLookupError:
            return False
        return open(f"/proc/{p}/stat").read().split()[2] != "Z"

    for _ in range(300):
        if not alive(pid):
            break
        time.sleep(0.1)
    still = alive(pid)
    if still:
        os.kill(pid, signal.SIGKILL)
    assert not still, "the step outlived its pipeline"


def test_a_step_is_stamped_by_every_hicra_module_its_code_imports(tmp_path):
    """The stamp follows the import graph, not a hand-typed list: the modules training imports only inside
    functions (sgfile, runfolder, models, dynamic_sampling, alpha) are in it, and editing one changes the stamp of
    the steps that import it and of no other."""
    import shutil

    from hicra.orchestration.profiles import load_profile
    from hicra.orchestration.runner import code_files, step_key

    _, steps = load_profile("sandbox")
    by = {s.name: s for s in steps}
    names = {f.name for f in code_files(by["02_train_hicra"])}
    assert {
        "train.py",
        "trainer.py",
        "sgfile.py",
        "runfolder.py",
        "models.py",
        "dynamic_sampling.py",
        "alpha.py",
        "advantage.py",
    } <= names
    study = load_profile("study-quick")[1]
    assert "study.py" in {f.name for f in code_files(study[-1])}  # notebook 07's imports
    root = tmp_path / "repo"
    shutil.copytree(R.REPO_ROOT / "hicra", root / "hicra", ignore=shutil.ignore_patterns("__pycache__"))
    before = {n: step_key(s, "figures", root) for n, s in by.items()}
    with open(root / "hicra" / "method" / "alpha.py", "a") as f:
        f.write("\n# an edit\n")
    after = {n: step_key(s, "figures", root) for n, s in by.items()}
    changed = {n for n in by if before[n] != after[n]}
    assert "02_train_hicra" in changed and "02_train_grpo" in changed
    assert changed == {n for n, s in by.items() if root / "hicra" / "method" / "alpha.py" in code_files(s, root)}
