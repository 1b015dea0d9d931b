"""Pipeline profiles are data: ``configs/profiles/<name>.yaml``, or any YAML file a user writes.

A profile names its run folder (``run``: a name under runs/, or an absolute path) and either lists its steps
(``steps``: notebook, params, inputs, outputs, needs, progress; ``${run}`` stands for the run folder, quoted
inside ``[...]`` or ``{...}``) or names a hicra function that makes them (``from: module:function`` with
``args``, as the study profiles do: one training run per arm and seed; a function outside hicra is refused,
since naming it would run its code, in a dry run too).
Copy a shipped profile to make your own, e.g. a GPU profile with the paper's recipes.

    from hicra.orchestration.profiles import load_profile, dry_run
    run_dir, steps = load_profile("sandbox")                          # configs/profiles/sandbox.yaml
    run_dir, steps = load_profile("my_profile.yaml", run="try1", args={"steps": 30})
    dry_run(steps)       # every step's config and parameters validated, no model loaded (python -m hicra.pipeline
                         # --profile paper --dry_run true on a CPU machine)
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from hicra.orchestration.runner import Step, notebook_path
from hicra.runinfo import train_command
from hicra.stepkit.cli import did_you_mean
from hicra.stepkit.nbparams import refuse_unknown
from hicra.stepkit.steps import from_params
from hicra.store.io import read_yaml_mapping
from hicra.store.paths import REPO_ROOT, resolve

PROFILE_DIR = REPO_ROOT / "configs" / "profiles"


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def profile_path(name: str) -> Path:
    """A shipped profile's name, or the path of a YAML file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        if not resolve(p).exists():
            raise FileNotFoundError(f"profile file {p} not found")
        return resolve(p)
    if not (PROFILE_DIR / f"{name}.yaml").exists():
        raise ValueError(
            f"unknown profile {name!r}{did_you_mean(name, profile_names())}; shipped: {', '.join(profile_names())} "
            "(or a YAML file path)"
        )
    return PROFILE_DIR / f"{name}.yaml"


def load_profile(name: str, run: str | None = None, args: dict | None = None) -> tuple[Path, list[Step]]:
    """(run folder, steps) of a profile; ``run`` replaces the profile's folder, ``args`` its function's arguments."""
    path = profile_path(name)
    spec = read_yaml_mapping(path)
    unknown = sorted(set(spec) - {"run", "steps", "from", "args"})
    if unknown or ("steps" in spec) == ("from" in spec):
        raise ValueError(
            f"{path}: a profile has `run` and either `steps` or `from` (+ `args`); got keys {sorted(spec)}"
        )
    run = run or spec.get("run") or path.stem
    folder = run if run.startswith("/") else f"runs/{run}"
    if "from" in spec:
        steps = profile_function(spec["from"], path)(run=folder, **{**spec.get("args", {}), **(args or {})})
    else:
        if args:
            raise ValueError(f"{path} lists its steps: it takes no arguments (got {sorted(args)})")
        steps = [Step(**_train_step(_substitute(s, folder))) for s in spec["steps"]]
    check_notebook_params(steps)  # an undeclared notebook parameter is refused before any step runs
    return resolve(folder), steps


def profile_function(ref, path):
    """The function a profile's ``from: module:function`` names. Only a hicra function may make steps: calling it
    is running code (in a dry run too), so a profile file cannot name ``os:system`` or any module outside hicra;
    steps of your own are listed under ``steps:``."""
    module, _, fn = str(ref).partition(":")
    if not (module == "hicra" or module.startswith("hicra.")) or not fn.isidentifier():
        raise ValueError(
            f"{path}: `from: {ref}` must name a hicra function as module:function (e.g. hicra.study:study_profile; "
            f"its code runs to make the steps, in a dry run too); list steps of your own under `steps:`"
        )
    try:
        f = getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{path}: `from: {ref}`: {e}") from None
    if not callable(f):
        raise ValueError(f"{path}: `from: {ref}` is not a function")
    return f


TRAIN_KEYS = {"recipe", "arm", "seed", "run_dir", "steps", "val_every", "save_steps", "launcher", "flags"}


def _train_step(s: dict) -> dict:
    """A listed step with ``train: {recipe, arm, seed, run_dir, launcher, ...}`` gets its ``command`` from
    hicra.runinfo.train_command, the one builder of every profile's training commands (the study's and the map's
    too), and its ``outputs`` (``<run_dir>/summary.json``) unless given."""
    if "train" not in s:
        return s

    s, t = dict(s), s["train"]
    unknown = sorted(set(t) - TRAIN_KEYS) if isinstance(t, dict) else ["(not a mapping)"]
    if unknown or "command" in s or not {"recipe", "arm", "seed", "run_dir"} <= set(t):
        raise ValueError(
            f"step {s.get('name')!r}: `train` takes recipe, arm, seed, run_dir and optionally "
            f"{sorted(TRAIN_KEYS - {'recipe', 'arm', 'seed', 'run_dir'})} (and no `command`); got {t!r}"
        )
    del s["train"]
    s["command"] = train_command(**t)
    s.setdefault("outputs", [f"{t['run_dir']}/summary.json"])
    s.setdefault("notebook", "")
    s.setdefault("params", {})
    s.setdefault("inputs", [])
    return s


def _substitute(x, folder: str):
    return map_strings(x, lambda s: s.replace("${run}", folder))


def map_strings(x, fn):
    """``x`` with ``fn`` applied to every string in it (values and mapping keys, through lists and tuples)."""
    if isinstance(x, str):
        return fn(x)
    if isinstance(x, (list, tuple)):
        return type(x)(map_strings(v, fn) for v in x)
    if isinstance(x, dict):
        return {map_strings(k, fn): map_strings(v, fn) for k, v in x.items()}
    return x


# the config dataclass each step notebook fills from its parameters cell
STEP_CONFIGS = {
    "00_sandbox.ipynb": "hicra.sandbox.step:BuildConfig",
    "01_strategic_grams.ipynb": "hicra.grams:GramsConfig",
    "03_dynamics.ipynb": "hicra.figures:FiguresConfig",
    "04_error_analysis.ipynb": "hicra.error_analysis:ErrorsConfig",
    "05_fork_tokens.ipynb": "hicra.forks:ForksConfig",
    "06_evaluate.ipynb": "hicra.evaluate:EvalConfig",
    "07_study.ipynb": "hicra.study:StudyConfig",
}


def notebook_parameters(notebook) -> dict:
    """The names and default values of a notebook's ``parameters`` cell (literal assignments)."""
    import nbformat

    nb = nbformat.read(notebook_path(str(notebook)), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return literal_assignments(cell.source, str(notebook))


def literal_assignments(source: str, where: str = "parameters cell") -> dict:
    """``name = <literal>`` lines of a parameters cell, parsed, never executed (a dry run runs nothing): anything
    else in the cell (a call, an import, an expression) is a ValueError naming its line."""

    try:
        tree = ast.parse(source, where)
    except SyntaxError as e:
        raise ValueError(f"{where}: the parameters cell is not valid Python (line {e.lineno}): {e.msg}") from None
    values: dict = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
                continue
            except ValueError:
                pass
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring-like string
        raise ValueError(
            f"{where}, parameters cell line {node.lineno}: only `name = <literal>` assignments are "
            f"allowed there (papermill replaces them); got {ast.get_source_segment(source, node)!r}"
        )
    return values


def check_notebook_params(steps: list[Step]) -> None:
    """Refuse, before any step runs, a notebook step's parameter that its notebook's parameters cell does not
    declare: one line naming the step, the parameter and the nearest declared name (papermill would only warn)."""

    for s in steps:
        if not s.command:
            try:
                refuse_unknown(set(s.params) - {"figures_dir"}, notebook_parameters(s.notebook), s.notebook)
            except ValueError as e:
                raise ValueError(f"step {s.name}: {e}") from None


def dry_run(steps: list[Step]) -> list[dict]:
    """Validate each step without running it or loading a model: a training command's recipe and flags
    (``hicra.train``'s dry run; its accelerate config with accelerate's parser), a notebook's parameters
    (names its parameters cell has; values its config dataclass accepts). Raises ValueError naming the step."""

    out = []
    for s in steps:
        try:
            if s.command:
                out.append({"step": s.name, **_dry_command(s.command)})
                continue
            defaults = notebook_parameters(s.notebook)
            refuse_unknown(set(s.params) - {"figures_dir"}, defaults, f"{s.notebook}'s parameters cell")
            values = {**defaults, **s.params}
            if s.notebook == "02_train.ipynb":
                train = _train()
                out.append({"step": s.name, **train.dry_run(train.recipe_from_params(values))})
            elif s.notebook in STEP_CONFIGS:
                module, _, cls = STEP_CONFIGS[s.notebook].partition(":")
                from_params(getattr(importlib.import_module(module), cls), values)
                out.append({"step": s.name, "ok": True, "config": cls})
            else:
                out.append({"step": s.name, "ok": True, "parameters": sorted(s.params)})
        except Exception as e:  # noqa: BLE001  (any failure is reported against its step)
            raise ValueError(f"step {s.name}: {type(e).__name__}: {e}") from e
    return out


def _train():
    """``hicra.train``, imported when a training step is checked: it loads TRL and torch, which ``--help``, the
    runner and a profile without training never need."""
    import hicra.train  # noqa: PLC0415  TRL + torch, for a training step's dry run only

    return hicra.train


def _dry_command(command: list) -> dict:
    cmd = [str(c) for c in command]
    res = {"ok": True}
    if cmd[:2] == ["accelerate", "launch"] and "--config_file" in cmd:
        from accelerate.commands.config.config_args import load_config_from_file

        cfg = resolve(cmd[cmd.index("--config_file") + 1])
        res["accelerate"] = type(load_config_from_file(str(cfg))).__name__
    if "-m" in cmd and cmd[cmd.index("-m") + 1] == "hicra.train":
        train = _train()
        rest = cmd[cmd.index("-m") + 2 :]
        path = rest.pop(0) if rest and not rest[0].startswith("--") else None
        res.update(train.dry_run(train.read_recipe(path, rest)))
    return res
