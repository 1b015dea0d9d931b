"""The figure pipeline: skips unchanged steps, reruns changed ones, and names the failing notebook and cell."""
import json

import nbformat
import pytest

from hicra import pipeline as P


def _nb(path, body):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('out = ""\nfigures_dir = "figures"\nsource = ""', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return str(path)


def test_skips_unchanged_and_reruns_changed(tmp_path):
    src = tmp_path / "input.txt"
    src.write_text("1")
    nb = _nb(tmp_path / "copy.ipynb", "import pathlib\npathlib.Path(out).write_text(pathlib.Path(source).read_text())")
    out = tmp_path / "out.txt"
    step = P.Step("copy", nb, {"out": str(out), "source": str(src)}, [str(src)], [str(out)])
    run = tmp_path / "run"
    assert P.run_step(step, run, str(tmp_path / "fig")) == "ran"
    assert P.run_step(step, run, str(tmp_path / "fig")) == "skipped"
    src.write_text("2")                                          # an input changed
    assert P.run_step(step, run, str(tmp_path / "fig")) == "ran" and out.read_text() == "2"
    out.unlink()                                                 # an output disappeared
    assert P.run_step(step, run, str(tmp_path / "fig")) == "ran"
    step.params = {**step.params, "source": str(tmp_path / "other.txt")}   # a parameter changed
    (tmp_path / "other.txt").write_text("3")
    assert P.run_step(step, run, str(tmp_path / "fig")) == "ran" and out.read_text() == "3"
    assert P.run_step(step, run, str(tmp_path / "fig")) == "skipped"
    assert P.run_step(step, run, str(tmp_path / "fig"), force=True) == "ran"
    assert (run / "executed" / "copy.ipynb").exists() and json.loads((run / ".stamps" / "copy.json").read_text())["key"]


def test_failure_names_notebook_and_cell(tmp_path):
    nb = _nb(tmp_path / "broken.ipynb", "x = 1\nraise ValueError('the sandbox cache is corrupt')")
    step = P.Step("broken", nb, {"out": str(tmp_path / "o")}, [], [str(tmp_path / "o")])
    with pytest.raises(P.StepFailed) as e:
        P.run_step(step, tmp_path / "run", str(tmp_path / "fig"))
    msg = str(e.value)
    assert "broken.ipynb failed in cell 2" in msg and "ValueError: the sandbox cache is corrupt" in msg and "x = 1" in msg
    assert not (tmp_path / "run" / ".stamps" / "broken.json").exists()


def test_profiles_are_well_formed():
    for name, make in P.PROFILES.items():
        steps = make()
        assert len({s.name for s in steps}) == len(steps)
        for s in steps:
            assert (P.REPO_ROOT / "notebooks" / s.notebook).exists(), s.notebook
            assert s.outputs, s.name
