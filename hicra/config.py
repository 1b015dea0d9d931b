"""Config plumbing shared by every step: YAML recipe + CLI overrides -> dataclass.

Each step (``python -m hicra.<step> CONFIG``) and its notebook build the same
config dataclass, so a papermill parameter, a YAML key and a ``--key value``
flag mean the same thing. Unknown keys are an error that lists the valid ones.
Every step ends by printing one JSON summary line (``emit``).

    cfg = load_config(SandboxConfig, "configs/sandbox.yaml", ["--seed", "3"])
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import yaml


REPO_ROOT = Path(__file__).resolve().parent.parent


def resolve(path) -> Path:
    """Relative paths are taken from the repository root, so notebooks and CLIs agree."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def _coerce(value: str, like):
    if isinstance(like, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if isinstance(like, (int, float)) and not isinstance(like, bool):
        return type(like)(value)
    if isinstance(like, (dict, list)):
        return json.loads(value)
    return yaml.safe_load(value) if like is None else value


def from_dict(cls, data: dict):
    """``cls(**data)`` with a clear error for unknown keys."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {unknown}; valid: {sorted(names)}")
    return cls(**data)


def load_config(cls, path: str | None = None, argv: list[str] | None = None):
    """Defaults <- YAML file <- ``--key value`` / ``--key=value`` flags."""
    data: dict = {}
    if path:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file {p} not found (see configs/ for recipes)")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{p}: expected a mapping of option: value")
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else
                         f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
                for f in dataclasses.fields(cls)}
    for key, val in split_flags(argv):
        if key not in defaults:
            raise ValueError(f"unknown option --{key}; valid: {sorted(defaults)}")
        data[key] = _coerce(val, data.get(key, defaults[key]))
    return from_dict(cls, data)


def split_flags(argv: list[str] | None) -> list[tuple[str, str]]:
    """``--key value`` / ``--key=value`` flags -> ``[(key, raw value), ...]`` (dashes in keys become ``_``)."""
    argv, out = list(argv or []), []
    while argv:
        flag = argv.pop(0)
        if not flag.startswith("--"):
            raise ValueError(f"unexpected argument {flag!r}; use --key value")
        key, _, val = flag[2:].partition("=")
        key = key.replace("-", "_")
        if not val:
            if not argv:
                raise ValueError(f"--{key} needs a value")
            val = argv.pop(0)
        out.append((key, val))
    return out


def parse_cli(cls, argv: list[str] | None = None):
    """``[CONFIG.yaml] [--key value ...]`` -> config instance."""
    argv = list(sys.argv[1:] if argv is None else argv)
    path = argv.pop(0) if argv and not argv[0].startswith("--") else None
    return load_config(cls, path, argv)


def _clean(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def emit(summary: dict) -> None:
    """Print the step's one-line JSON summary (always the last stdout line)."""
    sys.stdout.flush()
    print(json.dumps(_clean(summary)), flush=True)


def write_json(path, obj) -> Path:
    """Atomic JSON write (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(_clean(obj), f, indent=1)
    os.replace(tmp, path)
    return path


def write_parquet(path, df) -> Path:
    """Atomic parquet write (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path
