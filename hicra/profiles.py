"""Pipeline profiles are data: ``configs/profiles/<name>.yaml``, or any YAML file a user writes.

A profile names its run folder (``run``: a name under runs/, or an absolute path) and either lists its steps
(``steps``: notebook, params, inputs, outputs, needs, progress; ``${run}`` stands for the run folder, quoted
inside ``[...]`` or ``{...}``) or names a
function that makes them (``from: module:function`` with ``args``, as the study profiles do: one training run
per arm and seed). Copy a shipped profile to make your own, e.g. a GPU profile with the paper's recipes.

    from hicra.profiles import load_profile
    run_dir, steps = load_profile("sandbox")                          # configs/profiles/sandbox.yaml
    run_dir, steps = load_profile("my_profile.yaml", run="try1", args={"steps": 30})
"""
from __future__ import annotations

import importlib
from pathlib import Path

from hicra.config import REPO_ROOT, read_yaml_mapping, resolve
from hicra.runner import Step

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
        raise ValueError(f"unknown profile {name!r}; shipped: {', '.join(profile_names())} (or a YAML file path)")
    return PROFILE_DIR / f"{name}.yaml"


def load_profile(name: str, run: str | None = None, args: dict | None = None) -> tuple[Path, list[Step]]:
    """(run folder, steps) of a profile; ``run`` replaces the profile's folder, ``args`` its function's arguments."""
    path = profile_path(name)
    spec = read_yaml_mapping(path)
    unknown = sorted(set(spec) - {"run", "steps", "from", "args"})
    if unknown or ("steps" in spec) == ("from" in spec):
        raise ValueError(f"{path}: a profile has `run` and either `steps` or `from` (+ `args`); "
                         f"got keys {sorted(spec)}")
    run = run or spec.get("run") or path.stem
    folder = run if run.startswith("/") else f"runs/{run}"
    if "from" in spec:
        module, _, fn = spec["from"].partition(":")
        steps = getattr(importlib.import_module(module), fn)(run=folder, **{**spec.get("args", {}), **(args or {})})
    else:
        if args:
            raise ValueError(f"{path} lists its steps: it takes no arguments (got {sorted(args)})")
        steps = [Step(**_substitute(s, folder)) for s in spec["steps"]]
    return resolve(folder), steps


def _substitute(x, folder: str):
    if isinstance(x, str):
        return x.replace("${run}", folder)
    if isinstance(x, list):
        return [_substitute(v, folder) for v in x]
    if isinstance(x, dict):
        return {k: _substitute(v, folder) for k, v in x.items()}
    return x
