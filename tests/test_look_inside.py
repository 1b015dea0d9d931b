"""Notebooks that show the method and protect the run: the views escape text, the tour executes, undeclared
parameters are refused through plain papermill, and a notebook run with its defaults leaves `git status` clean."""

import json
import subprocess
import uuid
from pathlib import Path

import nbformat
import numpy as np
import papermill as pm
import pytest
import torch
from conftest import TINY

from hicra.analysis import show
from hicra.method.tagger import PlanningTagger
from hicra.orchestration.profiles import literal_assignments
from hicra.stepkit.nbparams import UnknownParameter, injected, refuse_unknown

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SCRIPT = '<script>alert("x")</script> First, let\'s aim for 7 & <b>check</b>'


# -- the views escape what they show -------------------------------------------------------------------------------


def test_token_view_renders_a_script_tag_as_text(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ids = tok(SCRIPT, add_special_tokens=False)["input_ids"]
    tagger = PlanningTagger(["let's aim for"], tok)
    plan, kinds = show.token_kinds(tagger, {"let's aim for": "deduction"}, [np.array(ids)])
    out = show.tokens_html(tok, ids, kinds[0], entropy=np.linspace(0, 2, len(ids)), title="<script>t</script>")
    assert "<script" not in out and "<b>check" not in out and out.count("&lt;script&gt;") == 1
    assert "&lt;/script&gt;" in out and "&amp;" in out
    assert plan[0].sum() >= 3 and out.count("background:#fdb863") == plan[0].sum()  # deduction tokens shaded


def test_text_view_escapes_and_shades_grams_by_kind():
    tagger = PlanningTagger(["let's aim for", "check"])
    out = show.text_html(SCRIPT, tagger, {"let's aim for": "deduction", "check": "backtracing"}, title="<i>x</i>")
    assert "<script" not in out and "<i>x" not in out and "&lt;script&gt;alert(&quot;x&quot;)" in out
    assert out.startswith('<div class="tex2jax_ignore mathjax_ignore"')  # no MathJax on "$" in real text (prices)
    assert "background:#fdb863\">let&#x27;s aim for</span>" in out and "background:#f4a582\">check</span>" in out


# -- A, Â and one update on a hand-made batch ------------------------------------------------------------------------


def _batch(rewards, planning):
    ids = [np.arange(len(p)) for p in planning]
    kinds = [["deduction" if x else None for x in p] for p in planning]
    ent = [np.ones(len(p)) for p in planning]
    return show.Batch(
        [[1]] * len(ids), ids, np.array(rewards, float), 2, [np.array(p) for p in planning], kinds, ent, [""] * len(ids)
    )


def test_hicra_moves_gradient_weight_onto_planning_tokens():
    b = _batch([1, 0], [[True, False, False], [True, True, False]])
    A, Ah = b.advantages(0.2)
    assert A[0, 0] > 0 > A[1, 0]
    assert torch.allclose(Ah[0], torch.tensor([1.2, 1.0, 1.0]) * A[0, 0])  # rewarded plan: (1 + α) A
    assert torch.allclose(Ah[1], torch.tensor([0.8, 0.8, 1.0]) * A[1, 0])  # failed plan: (1 − α) A
    s = show.weight_shares(b, 0.2)
    assert s["planning share of tokens"] == pytest.approx(0.5)
    assert s["planning share of |A| (GRPO)"] == pytest.approx(0.5)
    assert s["planning share of |Â| (HICRA)"] == pytest.approx((1.2 + 1.6) / (1.2 + 2 + 1.6 + 1))


# -- unknown parameters are refused ----------------------------------------------------------------------------------


def test_refusal_names_the_parameter_and_the_nearest_declared_one():
    history = ["import x", '# Parameters (papermill)\nrun_dir = "a"\nseed = 0\n', "# Parameters\nseeed = 3\n"]
    given, declared = injected(history)
    with pytest.raises(UnknownParameter) as e:
        refuse_unknown(given, declared)
    msg = str(e.value)
    assert "\n" not in msg and "'seeed' (did you mean 'seed'?)" in msg
    assert e.value._render_traceback_() == [f"UnknownParameter: {msg}"]  # IPython shows this line, no traceback
    assert injected(history[:2]) is None  # stepping through: nothing injected, nothing to check
    refuse_unknown(["seed"], declared)  # declared names pass


def test_a_profile_with_an_undeclared_notebook_parameter_is_refused_before_any_step(tmp_path):
    from hicra.orchestration.profiles import load_profile

    prof = tmp_path / "typo.yaml"
    prof.write_text(
        "run: typo\nsteps:\n  - name: s\n    notebook: 00_sandbox.ipynb\n"
        "    params: {n_calibraton: 4}\n    inputs: []\n    outputs: []\n"
    )
    with pytest.raises(
        ValueError, match=r"step s: unknown parameter 'n_calibraton' \(did you mean 'n_calibration'\?\)"
    ):
        load_profile(str(prof))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_refuses_an_undeclared_parameter(path, tmp_path):
    """`papermill NB out -p seeed 3` fails in the config cell, in one line naming `seeed`, before any work."""
    declared = literal_assignments(
        next(c.source for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    )
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(
            str(path),
            str(tmp_path / "out.ipynb"),
            parameters={"seeed": 3, "run_dir": str(tmp_path / "run")},
            progress_bar=False,
            kernel_name="python3",
        )
    assert e.value.ename == "UnknownParameter" and "'seeed'" in e.value.evalue and len(e.value.traceback) == 1
    if "seed" in declared:
        assert "did you mean 'seed'?" in e.value.evalue
    assert not (tmp_path / "run").exists()  # nothing ran


# -- the tour, and notebooks that never rewrite tracked files -------------------------------------------------------


def _outputs(nb, kind):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if kind in o.get("data", {})]


@pytest.mark.slow
def test_tour_executes_with_tiny_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("HICRA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "tour.ipynb"
    pm.execute_notebook(
        str(ROOT / "notebooks" / "00_tour.ipynb"),
        str(out),
        cwd=str(ROOT / "notebooks"),
        progress_bar=False,
        kernel_name="python3",
        parameters={"sandbox": TINY, "n_tasks": 2, "group_size": 2, "max_new_tokens": 16, "n_real": 1},
    )
    nb = nbformat.read(out, as_version=4)
    html = "".join(o["data"]["text/html"] for o in _outputs(nb, "text/html"))
    assert "gram kinds:" in html and "A = " in html and "Â on planning" in html  # the batch view
    assert "background:#" in html.split("GSM8K")[-1]  # real SmolLM2 text with a strategic gram shaded
    assert len(_outputs(nb, "image/png")) == 1  # the A vs Â plot
    assert "GRPO" in html and "HICRA" in html  # the one-update table


def _git_status():
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_defaults_write_under_runs_only(path):
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    params = literal_assignments(cell.source)
    for name in ("run_dir", "figures_dir"):
        if name in params:
            assert params[name].startswith("runs/"), f"{path.name}: {name} defaults to {params[name]!r}"


@pytest.mark.slow
def test_stepping_through_with_defaults_leaves_git_status_clean(tmp_path, monkeypatch):
    """00_sandbox (figures) and 02_train with their defaults, tiny sizes only: tracked files are untouched.
    Run folders go to a fresh folder under runs/ (git-ignored) and are removed after."""
    from test_notebooks import TINY_SANDBOX, TINY_TRAIN

    monkeypatch.setenv("HICRA_CACHE", str(tmp_path / "cache"))
    before, scratch = _git_status(), ROOT / "runs" / f"test-defaults-{uuid.uuid4().hex[:8]}"
    try:
        for name, params in (
            ("00_sandbox.ipynb", {"run_dir": f"{scratch.relative_to(ROOT)}/demo", **TINY_SANDBOX, "seed": 5}),
            ("02_train.ipynb", {"run_dir": f"{scratch.relative_to(ROOT)}/train", "sandbox": TINY, **TINY_TRAIN}),
        ):
            pm.execute_notebook(
                str(ROOT / "notebooks" / name),
                str(tmp_path / name),
                cwd=str(ROOT / "notebooks"),
                parameters=params,
                progress_bar=False,
                kernel_name="python3",
            )
            assert _git_status() == before, name
        assert json.loads((scratch / "train" / "summary.json").read_text())["steps"] == 2
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_cell_has_an_id_and_the_first_cell_says_how_to_run(path):
    raw = json.loads(path.read_text())
    assert (raw["nbformat"], raw["nbformat_minor"]) >= (4, 5) and all(c.get("id") for c in raw["cells"]), path.name
    first = "".join(raw["cells"][0]["source"])
    assert f"papermill notebooks/{path.name}" in first and "**Run it:**" in first and "2-core CPU" in first


def test_fig5_reading_says_when_runs_have_no_validation(tmp_path):
    """Notebook 03's reading of Fig 5's end point works for runs without validation (a GPU recipe, the rehearsal:
    final_accuracy.csv then holds the last step's training reward) and says so; with validation it reads accuracy
    and the paired difference's interval. (The rehearsal's 03 step failed on a reward table: 'val_accuracy'.)"""
    from hicra.figures import reading

    (tmp_path / "final_accuracy.csv").write_text(
        "method,seeds,reward,ci_lo,ci_hi\ngrpo,1,0.5625,,\nhicra,1,0.625,,\nhicra − grpo,1,0.0625,,\n"
    )
    text = reading(tmp_path)
    assert text.startswith("These runs log no validation: the numbers are the last step's training reward.")
    assert "hicra reaches 0.625 (1 seed)" in text and "an example, not a result" in text
    (tmp_path / "final_accuracy.csv").write_text(
        "method,seeds,val_accuracy,ci_lo,ci_hi\nwarm_start,4,0.373,0.373,0.373\ngrpo,2,0.55,0.54,0.56\n"
        "hicra,2,0.57,0.55,0.59\nhicra − grpo,2,0.02,-0.01,0.05\n"
    )
    text = reading(tmp_path)
    assert "no validation" not in text and "The warm start scores 0.373" in text
    assert "hicra − grpo is 0.020 [-0.010, 0.050] (2 seeds): its interval includes 0 (inconclusive)" in text
