"""Notebooks: committed clean, parameterised, and executable under papermill with tiny parameters."""

import json
import math
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from conftest import TINY

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TINY_SANDBOX = dict(
    sandbox=dict(hidden_size=32, n_layers=1, n_train_tasks=40, sft_steps=3, n_val=4, difficulty="v1"),
    n_calibration=4,
    n_show=1,
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), f"strip outputs of {path.name}"
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    assert nb.cells[0].cell_type == "markdown" and "Produces" in nb.cells[0].source


def _run(name, tmp_path, run="run", **params):
    out = tmp_path / "executed" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(ROOT / "notebooks" / name),
        str(out),
        cwd=str(ROOT / "notebooks"),
        parameters={"run_dir": str(tmp_path / run), "figures_dir": str(tmp_path / "fig"), **params},
        progress_bar=False,
        kernel_name="python3",
    )
    return tmp_path / run, tmp_path / "fig"


TWIN = {
    "00_sandbox.ipynb": "hicra.sandbox",
    "02_train.ipynb": "hicra.train",
    "01_strategic_grams.ipynb": "hicra.grams",
    "03_dynamics.ipynb": "hicra.figures",
    "04_error_analysis.ipynb": "hicra.error_analysis",
    "05_fork_tokens.ipynb": "hicra.forks",
    "06_evaluate.ipynb": "hicra.evaluate",
    "07_study.ipynb": "hicra.study",
}


def _same_files_as_cli(name, tmp_path, run, fig, **params):
    """The notebook's CLI twin, given the same parameters, writes the same files (names) as the notebook did."""
    import contextlib
    import io
    import os
    import runpy
    import sys

    cli_run, cli_fig = tmp_path / f"cli-{run.name}", tmp_path / f"cli-fig-{run.name}"
    flag = lambda k, v: [f"--{k}", v if isinstance(v, str) else json.dumps(v)]  # noqa: E731
    argv, cwd, out = sys.argv, os.getcwd(), io.StringIO()
    if name == "02_train.ipynb":  # the recipe CLI: the recipe file first, the notebook's overrides as flags
        params = dict(params)
        recipe, overrides = params.pop("recipe", "configs/sandbox.yaml"), params.pop("overrides", {})
        flags = [x for k, v in {**params, **overrides}.items() for x in flag(k, v)]
        sys.argv = [TWIN[name], recipe, "--run_dir", str(cli_run), *flags]
    else:
        flags = [x for k, v in params.items() for x in flag(k, v)]
        sys.argv = [TWIN[name], "--run_dir", str(cli_run), "--figures_dir", str(cli_fig), *flags]
    try:  # `python -m <twin> ...` run in this process (the same __main__ block, without a fresh interpreter)
        os.chdir(ROOT)
        with contextlib.redirect_stdout(out):
            runpy.run_module(TWIN[name], run_name="__main__", alter_sys=True)
    finally:
        sys.argv = argv
        os.chdir(cwd)
    json.loads(out.getvalue().strip().splitlines()[-1])  # the one JSON summary line, last
    names = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert names(cli_run) == names(run), name
    if name != "02_train.ipynb":  # training draws no figure; its notebook plots inline only
        made = set(names(cli_fig))
        assert made and made <= set(names(fig)), (name, made - set(names(fig)))


STEP_FUNCTION = {
    **{name: f"{module}:run" for name, module in TWIN.items()},
    "00_sandbox.ipynb": "hicra.sandbox.step:run",
    "02_train.ipynb": "hicra.train:run_step",
}


def test_every_notebook_calls_its_steps_one_function():
    """All 8 step notebooks build their config from the parameters cell and call the one function their CLI twin
    calls (imported by name from its module), and save no figure of their own."""
    import importlib

    assert set(STEP_FUNCTION) == {p.name for p in NOTEBOOKS} - {"00_tour.ipynb"}  # the tour is a reading, not a step
    for name, spec in STEP_FUNCTION.items():
        module, fn = spec.split(":")
        code = "\n".join(
            c.source for c in nbformat.read(ROOT / "notebooks" / name, as_version=4).cells if c.cell_type == "code"
        )
        assert code.count(f"{fn}(from_params(") + code.count(f"= {fn}(cfg)") == 1 and "from_params(" in code, name
        assert f"from {module} import" in code or f"from {module.rsplit('.', 1)[0]} import" in code, name
        assert "save_figure" not in code, f"{name} saves a figure its CLI twin would not"
        assert callable(getattr(importlib.import_module(module), fn))


def test_02_names_recipe_keys_but_repeats_no_recipe_default():
    """Notebook 02's parameters cell names the recipe keys a user changes most (papermill -p seed 3) and sets none of
    their values: each is None there and in TrainStepConfig, typed by the recipe's own field, so the recipe file is
    the one default (#36). A papermill string is typed as the CLI types it."""
    import ast
    import typing

    from hicra.train import SHORTCUTS, Recipe, TrainStepConfig, read_recipe, recipe_from_params

    nb = nbformat.read(ROOT / "notebooks" / "02_train.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params = {t.id: ast.literal_eval(n.value) for n in ast.parse(cell.source).body for t in n.targets}
    assert {k: params[k] for k in SHORTCUTS} == dict.fromkeys(SHORTCUTS)
    assert recipe_from_params(params) == {**read_recipe(params["recipe"], []), "run_dir": params["run_dir"]}
    assert typing.get_type_hints(TrainStepConfig)["seed"] == int | None
    kw = Recipe.parse(recipe_from_params({**params, "seed": "3", "method": "grpo", "max_steps": "7"})).kw
    assert (kw["seed"], kw["method"], kw["max_steps"]) == (3, "grpo", 7)


@pytest.mark.slow
def test_00_sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv("HICRA_CACHE", str(tmp_path / "cache"))
    run, fig = _run("00_sandbox.ipynb", tmp_path, seed=3, **TINY_SANDBOX)
    _same_files_as_cli(
        "00_sandbox.ipynb",
        tmp_path,
        run,
        fig,
        seed=3,
        sandbox=TINY_SANDBOX["sandbox"],
        n_calibration=TINY_SANDBOX["n_calibration"],
    )
    res = json.loads((run / "sandbox.json").read_text())
    assert math.isfinite(res["val_accuracy"]) and len(res["calibration"]) == 3
    assert json.loads((run / "params.json").read_text())["seed"] == 3
    for ext in ("png", "pdf"):
        assert (fig / f"sandbox_calibration.{ext}").stat().st_size > 1000


TINY_TRAIN = dict(
    max_steps=2,
    val_every=1,
    val_n=4,
    overrides=dict(
        num_generations=4, per_device_train_batch_size=8, gradient_accumulation_steps=1, max_completion_length=24
    ),
)


@pytest.mark.slow
def test_02_train_then_03_to_06_on_its_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("HICRA_CACHE", str(tmp_path / "cache"))
    runs = []
    for method, seed in (("grpo", 0), ("hicra", 0), ("hicra", 1)):
        run = tmp_path / f"train-{method}-s{seed}"
        out = tmp_path / "executed" / f"02_{method}_{seed}.ipynb"
        out.parent.mkdir(parents=True, exist_ok=True)
        pm.execute_notebook(
            str(ROOT / "notebooks" / "02_train.ipynb"),
            str(out),
            cwd=str(ROOT / "notebooks"),
            parameters={"run_dir": str(run), "method": method, "seed": seed, "sandbox": TINY, **TINY_TRAIN},
            progress_bar=False,
            kernel_name="python3",
        )
        s = json.loads((run / "summary.json").read_text())
        assert s["steps"] == 2 and s["method"] == method
        shown = "".join(
            o.get("data", {}).get("text/html", "") for c in nbformat.read(out, 4).cells for o in c.get("outputs", [])
        )
        assert "(first)" in shown and "(last)" in shown and "Â on planning" in shown  # its "look inside"
        runs.append(str(run))
    _same_files_as_cli(
        "02_train.ipynb", tmp_path, run, tmp_path / "fig", method="hicra", seed=1, sandbox=TINY, **TINY_TRAIN
    )
    run, fig = _run("03_dynamics.ipynb", tmp_path, runs=runs, tag="test")
    _same_files_as_cli("03_dynamics.ipynb", tmp_path, run, fig, runs=runs, tag="test")
    for name in ("fig3_dynamics_test", "fig5_methods_test"):
        assert (fig / f"{name}.png").stat().st_size > 5000 and (fig / f"{name}.pdf").exists()
    import pandas as pd

    table = pd.read_csv(run / "final_accuracy.csv")
    assert set(table.method) == {"warm_start", "grpo", "hicra", "hicra − grpo"}
    assert table.set_index("method").seeds["hicra"] == 2 and table.set_index("method").seeds["warm_start"] == 3

    run, fig = _run("04_error_analysis.ipynb", tmp_path, run="errors", runs=runs, tag="test", bins=2)
    _same_files_as_cli("04_error_analysis.ipynb", tmp_path, run, fig, runs=runs, tag="test", bins=2)
    e = json.loads((run / "errors.json").read_text())
    assert e["n_failed"] > 0 and set(e["planning_share"]) == {"grpo", "hicra"}
    assert (fig / "fig4_errors_test.png").stat().st_size > 5000

    models = {"warm start|before RL": "sandbox", "HICRA|after RL": f"{runs[1]}/final"}
    run, fig = _run(
        "05_fork_tokens.ipynb",
        tmp_path,
        run="forks",
        models=models,
        tag="test",
        n_prompts=4,
        max_new_tokens=24,
        sandbox=TINY,
    )
    _same_files_as_cli(
        "05_fork_tokens.ipynb",
        tmp_path,
        run,
        fig,
        models=models,
        tag="test",
        n_prompts=4,
        max_new_tokens=24,
        sandbox=TINY,
    )
    rows = json.loads((run / "forks.json").read_text())["rows"]
    assert [r["stage"] for r in rows] == ["before RL", "after RL"] and all(
        0 <= r["fork_is_planning"] <= 1 for r in rows
    )
    assert (fig / "fig9_forks_test.png").stat().st_size > 5000 and (run / "passages.html").exists()

    ev_params = dict(
        models={"Base": "sandbox", "HICRA": f"{runs[1]}/final"},
        tag="test",
        limit=4,
        k={"sandbox": 2},
        max_new_tokens=24,
        sandbox=TINY,
    )
    run, fig = _run("06_evaluate.ipynb", tmp_path, run="eval", **ev_params)
    _same_files_as_cli(
        "06_evaluate.ipynb",
        tmp_path,
        run,
        fig,
        **ev_params,
        temperature=1.0,
        top_p=1.0,
        batch_size=64,
        default_k=1,
        benchmarks=["sandbox"],
    )
    ev = json.loads((run / "eval.json").read_text())
    assert ev["models"]["HICRA"]["sandbox"]["n"] == 4 and ev["delta"]["of"] == "HICRA"
    assert (fig / "table1_test.png").stat().st_size > 5000 and "Δ (HICRA − Base)" in (run / "table1.md").read_text()


@pytest.mark.slow
def test_01_strategic_grams(tmp_path, monkeypatch):
    monkeypatch.setenv("HICRA_CACHE", str(tmp_path / "cache"))
    run, fig = _run(
        "01_strategic_grams.ipynb",
        tmp_path,
        tag="test",
        source="sandbox-traces",
        n_prompts=200,
        samples_per_prompt=1,
        n_eval=50,
        sandbox=TINY,
    )
    s = json.loads((run / "grams_summary.json").read_text())
    assert 0 < s["precision"] <= 1 and 0 < s["recall"] <= 1 and s["n_grams"] > 10
    assert (run / "strategic_grams.json").exists() and (run / "review.csv").exists()
    assert (fig / "fig_strategic_grams_test.png").stat().st_size > 5000
